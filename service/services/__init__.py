"""State changes and reads behind the endpoints; they take a session and never commit."""
