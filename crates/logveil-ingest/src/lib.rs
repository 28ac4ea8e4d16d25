//! logveil-ingest
