//! logveil-accounts
