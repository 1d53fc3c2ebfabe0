//! The seeded swarm runner (in progress).
