//! What both HTTP listeners share (the public API and the cluster-internal one):
//! the bounded server they run on and problem details, their one error body.

pub mod client_addr;
pub mod problem;
pub mod serve;
