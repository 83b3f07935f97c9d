//! PNG frames (`kineto extract-frames --format png`): lossless, so a clip's frames read back
//! equal to the decoded video's and training from them gives the video's metrics. Read as
//! Pillow's `Image.open(p).convert('RGB')` reads the PNGs Kineto writes (8-bit RGB); other
//! kinds are converted as Pillow does: grey replicated, alpha dropped, palettes expanded, 16-bit
//! samples to their high byte.

use std::io::Cursor;

/// Why a PNG could not be read or written (the `png` crate's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PngError {
    #[error("not a readable PNG: {0}")]
    Decode(String),
    #[error("cannot encode PNG: {0}")]
    Encode(String),
}

/// The PNG 8-byte signature.
const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn reader(data: &[u8]) -> Result<::png::Reader<Cursor<&[u8]>>, PngError> {
    if !data.starts_with(SIGNATURE) {
        return Err(PngError::Decode("no PNG signature".into()));
    }
    let mut decoder = ::png::Decoder::new(Cursor::new(data));
    // Palettes and low bit depths expanded to 8 bits, 16-bit samples cut to 8 (their high byte,
    // as Pillow's "RGB;16B" unpacker); the default limit (64 MiB) bounds hostile headers.
    decoder.set_transformations(::png::Transformations::EXPAND | ::png::Transformations::STRIP_16);
    decoder
        .read_info()
        .map_err(|e| PngError::Decode(e.to_string()))
}

/// Width and height from the header.
pub fn size(data: &[u8]) -> Result<(u32, u32), PngError> {
    Ok(reader(data)?.info().size())
}

/// Decodes to packed RGB (`width * height * 3` bytes).
pub fn decode_rgb(data: &[u8]) -> Result<(u32, u32, Vec<u8>), PngError> {
    let mut reader = reader(data)?;
    let len = reader
        .output_buffer_size()
        .ok_or_else(|| PngError::Decode("image too large".into()))?;
    let mut buf = vec![0u8; len];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| PngError::Decode(e.to_string()))?;
    buf.truncate(frame.buffer_size());
    let (width, height) = (frame.width, frame.height);
    let rgb = match frame.color_type {
        ::png::ColorType::Rgb => buf,
        ::png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        ::png::ColorType::Grayscale => buf.iter().flat_map(|&v| [v, v, v]).collect(),
        ::png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        ::png::ColorType::Indexed => {
            return Err(PngError::Decode("palette not expanded".into()));
        }
    };
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected {
        return Err(PngError::Decode(format!(
            "{} bytes decoded for a {width}x{height} image",
            rgb.len()
        )));
    }
    Ok((width, height, rgb))
}

/// Encodes packed RGB as an 8-bit RGB PNG (fast deflate: frames are many and large).
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, PngError> {
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected || width == 0 || height == 0 {
        return Err(PngError::Encode(format!(
            "{} bytes for a {width}x{height} RGB image",
            rgb.len()
        )));
    }
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, width, height);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(::png::Compression::Fast);
    let encode = |e: ::png::EncodingError| PngError::Encode(e.to_string());
    let mut writer = encoder.write_header().map_err(encode)?;
    writer.write_image_data(rgb).map_err(encode)?;
    writer.finish().map_err(encode)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_round_trips_exactly_and_bad_bytes_are_errors() {
        let (w, h) = (7u32, 5u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let bytes = encode_rgb(w, h, &rgb).unwrap();
        assert_eq!(size(&bytes).unwrap(), (w, h));
        assert_eq!(decode_rgb(&bytes).unwrap(), (w, h, rgb.clone()));
        assert!(decode_rgb(b"not a png").is_err());
        assert!(decode_rgb(&bytes[..bytes.len() / 2]).is_err());
        assert!(encode_rgb(w, h, &rgb[1..]).is_err());
        let (ok, refused) = crate::fuzz_lite::run("png", &[bytes], 2_000, &[], "", |data| {
            decode_rgb(data).map(drop).map_err(|e| e.to_string())
        });
        assert!(refused > 0 && ok + refused == 2_000);
    }

    #[test]
    fn grey_alpha_and_16_bit_images_become_rgb_as_pillow_converts_them() {
        let encode = |color: ::png::ColorType, depth: ::png::BitDepth, data: &[u8]| {
            let mut out = Vec::new();
            let mut e = ::png::Encoder::new(&mut out, 2, 1);
            e.set_color(color);
            e.set_depth(depth);
            let mut w = e.write_header().unwrap();
            w.write_image_data(data).unwrap();
            w.finish().unwrap();
            out
        };
        use ::png::{BitDepth::*, ColorType::*};
        let grey = encode(Grayscale, Eight, &[10, 200]);
        assert_eq!(
            decode_rgb(&grey).unwrap().2,
            vec![10, 10, 10, 200, 200, 200]
        );
        let rgba = encode(Rgba, Eight, &[1, 2, 3, 0, 4, 5, 6, 255]);
        assert_eq!(decode_rgb(&rgba).unwrap().2, vec![1, 2, 3, 4, 5, 6]);
        let ga = encode(GrayscaleAlpha, Eight, &[9, 0, 8, 255]);
        assert_eq!(decode_rgb(&ga).unwrap().2, vec![9, 9, 9, 8, 8, 8]);
        let rgb16 = encode(Rgb, Sixteen, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(decode_rgb(&rgb16).unwrap().2, vec![1, 3, 5, 7, 9, 11]);
    }
}
