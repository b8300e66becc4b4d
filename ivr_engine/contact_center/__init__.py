"""The contact centre around the IVR: the agent roster, routing calls to agents through the
live agent state, screen pops, and Asterisk's own view of agent calls (AMI)."""
