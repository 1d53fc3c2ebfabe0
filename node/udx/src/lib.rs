//! tern-udx: sans-IO UDX streams (spec: hyperswarm-transport §1).
