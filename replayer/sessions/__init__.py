"""Replay sessions: one clock, speed and rate shared by a group's workers (`<topic>.control`)."""
