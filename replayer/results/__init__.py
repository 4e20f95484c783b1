"""What a replay leaves behind: result records, their sink, the dead letters, the report."""
