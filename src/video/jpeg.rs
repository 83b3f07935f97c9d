//! JPEG decoding and encoding through the system's libjpeg-turbo (`c/jpeg_shim.c`, built by
//! `build.rs`): the library Pillow bundles, with Pillow's settings (ISLOW IDCT, fancy
//! upsampling), so a decoded frame equals `Image.open(p).convert('RGB')` bit for bit (measured:
//! 0 differing values on decord frames saved by Pillow at quality 75 and 95, 4:4:4, and by
//! `cv2.imwrite`; zune-jpeg 0.5 differs by up to 4 in ~11% of the values).

use std::ffi::{c_char, c_int, c_uint, c_ulong};

/// Why a JPEG could not be read or written (libjpeg's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegError {
    #[error("not a readable JPEG: {0}")]
    Decode(String),
    #[error("cannot encode JPEG: {0}")]
    Encode(String),
    #[error("image {width}x{height} is too large")]
    TooLarge { width: u32, height: u32 },
}

unsafe extern "C" {
    fn kineto_jpeg_size(
        buf: *const u8,
        len: c_ulong,
        w: *mut c_uint,
        h: *mut c_uint,
        msg: *mut c_char,
        msg_len: usize,
    ) -> c_int;
    fn kineto_jpeg_decode(
        buf: *const u8,
        len: c_ulong,
        out: *mut u8,
        cap: c_ulong,
        msg: *mut c_char,
        msg_len: usize,
    ) -> c_int;
    fn kineto_jpeg_encode(
        rgb: *const u8,
        w: c_uint,
        h: c_uint,
        quality: c_int,
        out: *mut *mut u8,
        out_len: *mut c_ulong,
        msg: *mut c_char,
        msg_len: usize,
    ) -> c_int;
    fn kineto_jpeg_free(p: *mut u8);
}

/// libjpeg's messages are short (`JMSG_LENGTH_MAX` is 200).
const MSG_LEN: usize = 256;

fn message(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Largest side accepted (JPEG's own limit is 65 535).
const MAX_SIDE: u32 = 65_535;

/// The image size from the header alone.
pub fn size(data: &[u8]) -> Result<(u32, u32), JpegError> {
    let len =
        c_ulong::try_from(data.len()).map_err(|_| JpegError::Decode("file too large".into()))?;
    let mut msg = [0 as c_char; MSG_LEN];
    let (mut w, mut h): (c_uint, c_uint) = (0, 0);
    // SAFETY: `data` is valid for `len` bytes and only read; `w`, `h` and `msg` are valid for
    // writes of their sizes (the shim writes at most `MSG_LEN` bytes, NUL included, with
    // snprintf); libjpeg errors longjmp inside the shim, never across this frame.
    let rc = unsafe {
        kineto_jpeg_size(
            data.as_ptr(),
            len,
            &mut w,
            &mut h,
            msg.as_mut_ptr(),
            MSG_LEN,
        )
    };
    if rc != 0 {
        return Err(JpegError::Decode(message(&msg)));
    }
    Ok((w, h))
}

/// Decodes a JPEG to RGB8 rows: `(width, height, pixels)`. Greyscale is replicated into the
/// three channels (as Pillow's `convert('RGB')`); CMYK is refused; a truncated file is an
/// error (Pillow: "image file is truncated"), other libjpeg warnings are ignored (as Pillow).
pub fn decode_rgb(data: &[u8]) -> Result<(u32, u32, Vec<u8>), JpegError> {
    let (w, h) = size(data)?;
    let len =
        c_ulong::try_from(data.len()).map_err(|_| JpegError::Decode("file too large".into()))?;
    let mut msg = [0 as c_char; MSG_LEN];
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(JpegError::TooLarge {
            width: w,
            height: h,
        });
    }
    let size = (w as usize) * (h as usize) * 3;
    let cap = c_ulong::try_from(size).map_err(|_| JpegError::TooLarge {
        width: w,
        height: h,
    })?;
    let mut out = vec![0u8; size];
    // SAFETY: `out` is valid for writes of `cap` bytes; the shim checks that the decoded size
    // is exactly `cap` before writing any row, and writes rows only inside it.
    let rc = unsafe {
        kineto_jpeg_decode(
            data.as_ptr(),
            len,
            out.as_mut_ptr(),
            cap,
            msg.as_mut_ptr(),
            MSG_LEN,
        )
    };
    if rc != 0 {
        return Err(JpegError::Decode(message(&msg)));
    }
    Ok((w, h, out))
}

/// Encodes RGB8 rows at `quality` (1..=100) with libjpeg's defaults: 4:2:0, ISLOW DCT,
/// standard Huffman tables (what `cv2.imwrite` writes).
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8], quality: u8) -> Result<Vec<u8>, JpegError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(JpegError::TooLarge { width, height });
    }
    if rgb.len() != (width as usize) * (height as usize) * 3 {
        return Err(JpegError::Encode(format!(
            "{} bytes for a {width}x{height} RGB image",
            rgb.len()
        )));
    }
    let mut msg = [0 as c_char; MSG_LEN];
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut out_len: c_ulong = 0;
    // SAFETY: `rgb` holds exactly width*height*3 bytes (checked above) and is only read;
    // `out`/`out_len` receive a malloc'ed buffer that is copied and freed below.
    let rc = unsafe {
        kineto_jpeg_encode(
            rgb.as_ptr(),
            width,
            height,
            c_int::from(quality.clamp(1, 100)),
            &mut out,
            &mut out_len,
            msg.as_mut_ptr(),
            MSG_LEN,
        )
    };
    if rc != 0 || out.is_null() {
        return Err(JpegError::Encode(message(&msg)));
    }
    let n = usize::try_from(out_len).unwrap_or(0);
    // SAFETY: on success the shim's `out` points to `out_len` initialised bytes from libjpeg's
    // memory destination; they are copied before the buffer is freed, once.
    let bytes = unsafe { std::slice::from_raw_parts(out, n).to_vec() };
    // SAFETY: `out` came from libjpeg's malloc and is freed exactly once.
    unsafe { kineto_jpeg_free(out) };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&[(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]);
            }
        }
        v
    }

    #[test]
    fn round_trip_is_close() {
        let (w, h) = (37, 21);
        let rgb = gradient(w, h);
        let jpg = encode_rgb(w, h, &rgb, 95).unwrap();
        let (dw, dh, back) = decode_rgb(&jpg).unwrap();
        assert_eq!((dw, dh), (w, h));
        let max = rgb
            .iter()
            .zip(&back)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(max < 40, "max diff {max}");
    }

    #[test]
    fn mutated_jpegs_are_decoded_or_refused_in_one_line() {
        let seeds = [
            encode_rgb(24, 16, &gradient(24, 16), 90).unwrap(),
            encode_rgb(9, 7, &gradient(9, 7), 40).unwrap(),
        ];
        let (ok, refused) = crate::fuzz_lite::run(
            "jpeg",
            &seeds,
            3_000,
            &[0xff, 0xd8, 0xc0, 0xc4, 0xda],
            "",
            |data| decode_rgb(data).map(drop).map_err(|e| e.to_string()),
        );
        assert!(refused > 0 && ok + refused == 3_000);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(matches!(
            decode_rgb(b"not a jpeg"),
            Err(JpegError::Decode(_))
        ));
        assert!(decode_rgb(&[]).is_err());
        let jpg = encode_rgb(64, 64, &gradient(64, 64), 90).unwrap();
        let cut = &jpg[..jpg.len() / 2];
        let err = decode_rgb(cut).unwrap_err();
        assert!(err.to_string().contains("JPEG"), "{err}");
        assert!(encode_rgb(2, 2, &[0; 5], 90).is_err());
    }
}
