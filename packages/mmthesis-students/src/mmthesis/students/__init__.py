"""mmthesis.students: student models, losses, memory bank, LightningModules and training."""
