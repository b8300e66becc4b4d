"""The omnichannel bridge (AMI/ESL call events → timeline). Planned in issue 4; the engine
already writes each call's IVR summary to the timeline itself (ivr_engine.flows.recorder)."""
