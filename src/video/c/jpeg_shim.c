/* JPEG decoding and encoding through the system's libjpeg(-turbo), the library Pillow bundles:
 * ISLOW IDCT and fancy upsampling (libjpeg's defaults, Pillow's too), so the RGB pixels equal
 * `Image.open(p).convert('RGB')` bit for bit. Called from src/video/jpeg.rs; errors come back
 * as a return code and a message, never as an exit (libjpeg's default error_exit). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

struct kineto_err {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char *msg;
  size_t msg_len;
};

static void kineto_error_exit(j_common_ptr c) {
  struct kineto_err *e = (struct kineto_err *)c->err;
  char text[JMSG_LENGTH_MAX];
  (*c->err->format_message)(c, text);
  snprintf(e->msg, e->msg_len, "%s", text);
  longjmp(e->jump, 1);
}

/* Warnings are ignored as Pillow ignores them, except a premature end of data: Pillow reports
 * a truncated file as an error ("image file is truncated"). */
static void kineto_emit_message(j_common_ptr c, int level) {
  if (level == -1 && c->err->msg_code == JWRN_JPEG_EOF) {
    kineto_error_exit(c);
  }
}

static void kineto_output_message(j_common_ptr c) { (void)c; }

/* Reads the header only: 0 and the output size (RGB), or -1 and a message. */
int kineto_jpeg_size(const unsigned char *buf, unsigned long len, unsigned int *w,
                     unsigned int *h, char *msg, size_t msg_len) {
  struct jpeg_decompress_struct d;
  struct kineto_err e;
  memset(&d, 0, sizeof d);
  d.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = kineto_error_exit;
  e.pub.emit_message = kineto_emit_message;
  e.pub.output_message = kineto_output_message;
  e.msg = msg;
  e.msg_len = msg_len;
  if (setjmp(e.jump)) {
    jpeg_destroy_decompress(&d);
    return -1;
  }
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, buf, len);
  jpeg_read_header(&d, TRUE);
  *w = d.image_width;
  *h = d.image_height;
  jpeg_destroy_decompress(&d);
  return 0;
}

/* Decodes into `out` (w*h*3 bytes, the size kineto_jpeg_size gave): 0, or -1 and a message. */
int kineto_jpeg_decode(const unsigned char *buf, unsigned long len, unsigned char *out,
                       unsigned long cap, char *msg, size_t msg_len) {
  struct jpeg_decompress_struct d;
  struct kineto_err e;
  memset(&d, 0, sizeof d);
  d.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = kineto_error_exit;
  e.pub.emit_message = kineto_emit_message;
  e.pub.output_message = kineto_output_message;
  e.msg = msg;
  e.msg_len = msg_len;
  if (setjmp(e.jump)) {
    jpeg_destroy_decompress(&d);
    return -1;
  }
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, buf, len);
  jpeg_read_header(&d, TRUE);
  if (d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK) {
    snprintf(msg, msg_len, "CMYK JPEGs are not supported");
    jpeg_destroy_decompress(&d);
    return -1;
  }
  d.out_color_space = JCS_RGB;
  d.dct_method = JDCT_ISLOW;
  d.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&d);
  if (d.output_components != 3 ||
      (unsigned long)d.output_width * d.output_height * 3 != cap) {
    snprintf(msg, msg_len, "decoded size %ux%u differs from the header's", d.output_width,
             d.output_height);
    jpeg_destroy_decompress(&d);
    return -1;
  }
  while (d.output_scanline < d.output_height) {
    JSAMPROW row = out + (unsigned long)d.output_scanline * d.output_width * 3;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return 0;
}

/* Encodes RGB8 rows (w*3 bytes each) at `quality` with libjpeg's defaults (4:2:0, ISLOW DCT,
 * standard Huffman tables: OpenCV's cv2.imwrite settings). *out is malloc'ed: free it with
 * kineto_jpeg_free. 0, or -1 and a message. */
int kineto_jpeg_encode(const unsigned char *rgb, unsigned int w, unsigned int h, int quality,
                       unsigned char **out, unsigned long *out_len, char *msg, size_t msg_len) {
  struct jpeg_compress_struct c;
  struct kineto_err e;
  memset(&c, 0, sizeof c);
  *out = NULL;
  *out_len = 0;
  c.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = kineto_error_exit;
  e.pub.output_message = kineto_output_message;
  e.msg = msg;
  e.msg_len = msg_len;
  if (setjmp(e.jump)) {
    jpeg_destroy_compress(&c);
    free(*out);
    *out = NULL;
    return -1;
  }
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, out, out_len);
  c.image_width = w;
  c.image_height = h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(rgb + (unsigned long)c.next_scanline * w * 3);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  return 0;
}

void kineto_jpeg_free(unsigned char *p) { free(p); }
