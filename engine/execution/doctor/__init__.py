"""`suture doctor`: what the daemon will reach, checked before the first real alert needs it.

Each check says ok or names a problem and how to fix it; nothing is sent, accepted or written
(no message through a channel, no host key learnt, no database created or migrated).
"""
