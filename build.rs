//! Builds the small C shim over the system's libjpeg(-turbo) (`src/video/c/jpeg_shim.c`), the
//! JPEG library Pillow bundles: frame datasets decode to Pillow's pixels bit for bit.

fn main() {
    println!("cargo:rerun-if-changed=src/video/c/jpeg_shim.c");
    cc::Build::new()
        .file("src/video/c/jpeg_shim.c")
        .warnings(true)
        .compile("kineto_jpeg_shim");
    println!("cargo:rustc-link-lib=jpeg");
}
