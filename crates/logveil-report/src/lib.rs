//! logveil-report
