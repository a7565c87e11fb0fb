"""File → Train on Your Own Data…: the dialog (dialog) assembled from its form (form), loss curve (curve) and samples
(samples), with a controller that owns the training thread (controller) and the Qt-free facts about runs (runs)."""
