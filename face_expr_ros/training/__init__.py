"""Training: datasets, augmentation, teacher annotation, losses, the training loop, evaluation."""
