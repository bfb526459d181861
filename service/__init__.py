"""distillrec service side: the FastAPI app and the torch-free artifact contract."""
