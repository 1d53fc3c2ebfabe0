//! A thin, panic-free wrapper over `snow::HandshakeState` shared by the IK and XX front ends:
//! builds the state with [`TernResolver`] and the exact HyperDHT protocol name, bounds message
//! sizes, maps snow's errors, and extracts the split keys and handshake hash at the end.

use snow::params::NoiseParams;
use snow::{Builder, HandshakeState};

use super::resolver::TernResolver;
use super::{HandshakeError, HandshakeResult};
use crate::sign::{KeyPair, PublicKey};

/// Noise limits every handshake message to 65535 bytes (spec §9.3).
pub const MAX_MESSAGE_LEN: usize = 65535;

/// Largest handshake overhead of IK and XX: `e` (32) + encrypted `s` (48) + payload tag (16).
const MAX_OVERHEAD: usize = 32 + 48 + 16;

/// Which handshake pattern.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pattern {
    Ik,
    Xx,
}

impl Pattern {
    /// A name snow can parse (it knows no "Ed25519" DH)...
    fn parse_name(self) -> &'static str {
        match self {
            Pattern::Ik => "Noise_IK_25519_ChaChaPoly_BLAKE2b",
            Pattern::Xx => "Noise_XX_25519_ChaChaPoly_BLAKE2b",
        }
    }

    /// ...and the name noise-handshake hashes into `h` (35 bytes, zero-padded to 64).
    fn wire_name(self) -> &'static str {
        match self {
            Pattern::Ik => "Noise_IK_Ed25519_ChaChaPoly_BLAKE2b",
            Pattern::Xx => "Noise_XX_Ed25519_ChaChaPoly_BLAKE2b",
        }
    }
}

/// One side of a handshake in progress.
pub(crate) struct Session {
    hs: HandshakeState,
    initiator: bool,
    local_public_key: PublicKey,
    /// Set by a failed operation that may have left snow's cipher state out of step with its
    /// checkpointed `h`/`ck` (snow restores only those); every later call then fails.
    poisoned: bool,
}

impl Session {
    pub(crate) fn new(
        pattern: Pattern,
        initiator: bool,
        static_key: &KeyPair,
        remote_static: Option<&PublicKey>,
        ephemeral_seed: &[u8; 32],
        prologue: &[u8],
    ) -> Result<Self, HandshakeError> {
        let mut params: NoiseParams =
            pattern.parse_name().parse().map_err(|_| HandshakeError::Setup)?;
        // snow's SymmetricState::initialize hashes `params.name`; this is what makes the
        // handshake hash match noise-handshake (checked by the noise-ik vector's trace).
        params.name = pattern.wire_name().to_owned();
        let static_seed = static_key.seed();
        let local_public_key = static_key.public_key();
        let resolver = Box::new(TernResolver::new(ephemeral_seed, static_seed, &local_public_key));
        let mut builder = Builder::with_resolver(params, resolver)
            .local_private_key(static_seed)
            .and_then(|b| b.prologue(prologue))
            .map_err(|_| HandshakeError::Setup)?;
        if let Some(rs) = remote_static {
            builder = builder.remote_public_key(&rs.0).map_err(|_| HandshakeError::Setup)?;
        }
        let hs = if initiator { builder.build_initiator() } else { builder.build_responder() }
            .map_err(|_| HandshakeError::Setup)?;
        Ok(Self { hs, initiator, local_public_key, poisoned: false })
    }

    /// Writes the next handshake message carrying `payload`.
    pub(crate) fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        if self.poisoned {
            return Err(HandshakeError::State);
        }
        if payload.len() + MAX_OVERHEAD > MAX_MESSAGE_LEN {
            return Err(HandshakeError::MessageTooLong);
        }
        let mut out = vec![0u8; payload.len() + MAX_OVERHEAD];
        let len = self.hs.write_message(payload, &mut out).map_err(|e| {
            self.poisoned = true;
            map_err(e)
        })?;
        out.truncate(len);
        Ok(out)
    }

    /// Reads the next handshake message; returns its decrypted payload.
    ///
    /// `retryable` says that the message's first DH token comes before any decryption (true for
    /// IK message 1 and 2 and XX message 2): then snow's checkpoint restore is complete, and a
    /// failed read leaves the state as it was, so another candidate message may be tried (the
    /// client races two relays). Otherwise a failure poisons the session.
    pub(crate) fn read(
        &mut self,
        message: &[u8],
        retryable: bool,
    ) -> Result<Vec<u8>, HandshakeError> {
        if self.poisoned {
            return Err(HandshakeError::State);
        }
        if message.len() > MAX_MESSAGE_LEN {
            return Err(HandshakeError::MessageTooLong);
        }
        // A payload is never longer than the message that carries it.
        let mut payload = vec![0u8; message.len()];
        let len = self.hs.read_message(message, &mut payload).map_err(|e| {
            self.poisoned |= !retryable;
            map_err(e)
        })?;
        payload.truncate(len);
        Ok(payload)
    }

    /// The remote static key, once the pattern has transmitted (or pre-shared) it.
    pub(crate) fn remote_static(&self) -> Result<PublicKey, HandshakeError> {
        let rs = self.hs.get_remote_static().ok_or(HandshakeError::State)?;
        let rs = <[u8; 32]>::try_from(rs).map_err(|_| HandshakeError::State)?;
        Ok(PublicKey(rs))
    }

    /// Split keys and handshake hash; only once every message has been processed.
    pub(crate) fn finish(&mut self) -> Result<HandshakeResult, HandshakeError> {
        if self.poisoned || !self.hs.is_handshake_finished() {
            return Err(HandshakeError::State);
        }
        let remote_public_key = self.remote_static()?;
        let hash = <[u8; 64]>::try_from(self.hs.get_handshake_hash())
            .map_err(|_| HandshakeError::State)?;
        // (t1, t2) = HKDF(ck, empty): the initiator sends with t1, the responder with t2.
        let (t1, t2) = self.hs.dangerously_get_raw_split();
        let (tx, rx) = if self.initiator { (t1, t2) } else { (t2, t1) };
        Ok(HandshakeResult {
            tx,
            rx,
            hash,
            is_initiator: self.initiator,
            local_public_key: self.local_public_key,
            remote_public_key,
        })
    }
}

fn map_err(e: snow::Error) -> HandshakeError {
    match e {
        snow::Error::Dh => HandshakeError::Dh,
        snow::Error::Decrypt => HandshakeError::Decrypt,
        snow::Error::Input => HandshakeError::Malformed,
        snow::Error::Rng => HandshakeError::EphemeralUsed,
        snow::Error::State(_) => HandshakeError::State,
        _ => HandshakeError::Setup,
    }
}
