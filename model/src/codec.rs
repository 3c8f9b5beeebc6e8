//! The one binary codec of bcm (postcard). Every byte that goes to disk or over the
//! Raft wire is produced here, so changing the codec stays a one-module change.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An encoding or decoding failure, with the type that was being handled.
#[derive(Debug, thiserror::Error)]
#[error("cannot {verb} {what}: {source}")]
pub struct CodecError {
    verb: &'static str,
    what: &'static str,
    #[source]
    source: postcard::Error,
}

/// Encodes a value with postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|source| CodecError {
        verb: "encode",
        what: std::any::type_name::<T>(),
        source,
    })
}

/// Encodes a value as one frame of a stream: its length (4 bytes, big-endian)
/// and then its encoding, in one buffer (one write, one segment).
pub fn encode_frame<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut frame = postcard::to_extend(value, vec![0u8; 4]).map_err(|source| CodecError {
        verb: "encode",
        what: std::any::type_name::<T>(),
        source,
    })?;
    let len = u32::try_from(frame.len() - 4).map_err(|_| CodecError {
        verb: "frame",
        what: std::any::type_name::<T>(),
        source: postcard::Error::SerializeBufferFull,
    })?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// Decodes a value at the start of `bytes`, whatever follows it (the id at the
/// head of a request whose rest does not decode, say).
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    postcard::take_from_bytes(bytes)
        .map(|(value, _)| value)
        .map_err(|source| CodecError {
            verb: "decode",
            what: std::any::type_name::<T>(),
            source,
        })
}

/// The length of `value`'s encoding, without encoding it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()).map_err(
        |source| CodecError {
            verb: "measure",
            what: std::any::type_name::<T>(),
            source,
        },
    )
}

/// How deep a value may hold itself (a batch in a batch in ...) to decode. What
/// bcm writes nests at most twice; without a bound, a body of nested batches
/// (two bytes a level) would recurse until the decoding thread's stack overflows.
pub const MAX_NESTING: u32 = 16;

thread_local! {
    static NESTING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Decodes the field through which a type holds itself
/// (`#[serde(deserialize_with = "codec::nested")]`), refusing to go deeper than
/// [`MAX_NESTING`] such fields (the depth is counted on the decoding thread).
pub fn nested<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Leave(u32);
    impl Drop for Leave {
        fn drop(&mut self) {
            NESTING.set(self.0);
        }
    }
    let depth = NESTING.get();
    if depth >= MAX_NESTING {
        return Err(serde::de::Error::custom(format!(
            "nested more than {MAX_NESTING} deep"
        )));
    }
    NESTING.set(depth + 1);
    let _leave = Leave(depth);
    T::deserialize(d)
}

/// Decodes a value encoded by [`encode`]. Trailing bytes are an error: a body is one value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|source| CodecError {
        verb: "decode",
        what: std::any::type_name::<T>(),
        source,
    })?;
    if !rest.is_empty() {
        return Err(CodecError {
            verb: "decode",
            what: std::any::type_name::<T>(),
            source: postcard::Error::DeserializeUnexpectedEnd,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_any_string_map(m in proptest::collection::btree_map(".*", any::<u64>(), 0..20)) {
            let bytes = encode(&m).unwrap();
            let back: std::collections::BTreeMap<String, u64> = decode(&bytes).unwrap();
            prop_assert_eq!(m, back);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<crate::Command>(&bytes);
        }
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let v = (String::from("key"), vec![7u8; 300], 1u64 << 40);
        assert_eq!(encoded_len(&v).unwrap(), encode(&v).unwrap().len());
    }

    #[test]
    fn a_frame_is_the_length_then_the_encoding() {
        let v = (String::from("key"), vec![7u8; 300]);
        let frame = encode_frame(&v).unwrap();
        let body = encode(&v).unwrap();
        assert_eq!(frame[..4], (body.len() as u32).to_be_bytes());
        assert_eq!(frame[4..], body[..]);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&7u64).unwrap();
        bytes.push(0);
        assert!(decode::<u64>(&bytes).is_err());
    }
}
