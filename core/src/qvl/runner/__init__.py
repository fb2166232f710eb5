"""The generic runner: train, eval and predict for any task, built only from hooks."""
