"""The Qt desktop app (PySide6). The only package allowed to import Qt; the window itself is built in issue 3."""
