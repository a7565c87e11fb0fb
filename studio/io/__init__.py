"""Reading and writing files, with no torch and no Qt: atomic writes, picture codecs inside requests, colour maps."""
