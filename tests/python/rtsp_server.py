"""An RTSP server on 127.0.0.1 for tests/watch_stream.rs, built on GStreamer's own RTSP server
library (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi; run it with the system python3).

Usage: rtsp_server.py PORT CLIP.mp4   -> rtsp://127.0.0.1:PORT/clip streams the clip's H.264 as
it is (no re-encoding), in real time, from its first frame for each client. Prints "ready" once
it listens; runs until killed.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    port, clip = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{clip}" ! qtdemux ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
