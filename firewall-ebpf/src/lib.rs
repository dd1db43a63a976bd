//! Empty: the crate's product is its binary, the kernel object. This library target exists
//! so that firewall-user can build-depend on the crate and cargo rebuilds the object
//! when it changes.
#![no_std]
