"""Loading models and reading facts about the loaded object."""
