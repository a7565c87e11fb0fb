"""The application core the window adapts and the CLI shares, with no Qt.

- `models`: the installed models (scan roots and added folders; settings.toml is the one store of added folders);
- `document`: the open document: its request, undo history (`undo`: plain command objects), seed mode, render
  history, latent library, image-to-image source, file and saved state;
- `timeline`: the document's timeline, edited as undoable steps;
- `tasks`: the document's work on the engine, each one of the work functions of studio.engine.work (the CLI's too);
- `listeners`: plain callbacks, which studio.ui turns into Qt signals.

    models = ModelLibrary(roots)
    document = OpenDocument(models)
    timeline = TimelineEditor(document)
    tasks = Tasks(document, timeline, runner)  # runner: the window's engine bridge

Submodules are imported by name (this package imports none of them, so `studio.app.undo` stays light).
"""
