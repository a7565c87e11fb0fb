"""The panels of the main window; each takes the Session in its constructor and binds to it."""
