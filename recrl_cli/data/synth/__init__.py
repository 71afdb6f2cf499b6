"""Raw-format data generators with planted ground truth (``recrl synth <dataset>``)."""
