"""Online garbage collection, retention and scrub (see the README's "Garbage collection").

``collector`` works through review queues that database triggers fill whenever a
reference disappears; ``hooks`` is what writers call so that it never removes
what they are making live; ``retention`` deletes tags by rule; ``scrub``
re-hashes the store; ``periodic`` runs the collector inside the server.
"""
