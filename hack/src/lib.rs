//! Deliberately empty: this crate exists for its Cargo.toml, which gives every build of the
//! workspace the same features of a few shared dependencies (see there why).
