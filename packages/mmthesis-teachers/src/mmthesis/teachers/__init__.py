"""mmthesis.teachers: teacher architectures, checkpoint converters and KD targets."""
