"""Face landmarks and selfie masks from MediaPipe, the joint camera fit, the bundled model files."""
