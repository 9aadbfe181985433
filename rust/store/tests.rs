//! Store behaviour on the crash simulator and on real files.
