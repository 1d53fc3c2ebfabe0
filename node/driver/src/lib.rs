//! tern-driver: event loops that run sans-IO endpoints on real sockets (work in progress).
