"""mmthesis.eval: evaluation tasks, metrics and result writing for any model with encode_image/encode_text."""
