"""The data the training loops are fed: the recipes' own (font glyphs here; procedural sounds in
studio.train.sounds) and the user's folders of pictures or sounds."""
