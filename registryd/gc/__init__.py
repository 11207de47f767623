"""Online garbage collection, retention and scrub (see the README's "Garbage collection").

``collector`` works through review queues that database triggers fill whenever a
reference disappears (what writers take so that it never removes what they are
making live is ``db/gc_holds.py``, below the domain); ``retention`` deletes tags by rule; ``scrub``
re-hashes the store; ``periodic`` runs the collector inside the server.
"""
