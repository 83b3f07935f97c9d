#!/usr/bin/env bash
# Render packaging/icons/kineto.svg into the hicolor PNG sizes the .deb and the AppImage install:
# packaging/icons/hicolor/<n>x<n>/apps/kineto.png. The PNGs are checked in; run this again after
# editing the SVG. Needs rsvg-convert (apt-get install librsvg2-bin) or ImageMagick's convert.
set -euo pipefail
cd "$(dirname "$0")/icons"

svg=kineto.svg
for n in 16 32 48 64 128 256; do
  out="hicolor/${n}x${n}/apps/kineto.png"
  mkdir -p "$(dirname "$out")"
  if command -v rsvg-convert >/dev/null 2>&1; then
    rsvg-convert --width "$n" --height "$n" --output "$out" "$svg"
  elif command -v convert >/dev/null 2>&1 && convert -version 2>/dev/null | grep -q ImageMagick; then
    convert -background none -density 384 "$svg" -resize "${n}x${n}" "PNG32:$out"
  else
    echo "make-icons.sh: needs rsvg-convert (apt-get install librsvg2-bin) or ImageMagick" >&2
    exit 2
  fi
  echo "$out"
done
