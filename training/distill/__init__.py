"""Knowledge distillation: the KD interface, the method registry and the teacher artifacts."""
