"""The search: the stage loop, its learners and controller, the supernet, rewards, checkpoint and result."""
