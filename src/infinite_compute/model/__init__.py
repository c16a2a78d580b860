"""Model: the only code that trains or runs a model - levanter's Llama of a study shape (shapes),
the optimizer with traced hyperparameters (optim), the two training engines (loop, trainer) and what
they share (engine), scoring (scoring), sampling (sampling) and greedy answers (answers). Imports
jax, haliax, equinox and levanter at the top; imports data, study, science and runtime."""
