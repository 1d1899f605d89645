"""
Replies made for one connection alone (L{ReplyArray}: the lines of a
C{logs}, the rows of C{stats}), and the daemon-wide account of those held
for clients that do not read them (L{HeldReplies}): a client that does not
read its reply while they pass the budget is disconnected, so that however
many clients ask for megabytes and never read, the daemon holds at most
the budget of them (plus the one piece each has in its write buffer).
"""

from __future__ import annotations

from collections.abc import Sequence

from pycm.wirejson import EncodedArray

#: The most bytes of replies of their own (L{ReplyArray}) the daemon holds
#: for clients that do not read them, all connections together.
DEFAULT_MAX_HELD_REPLIES = 64 * 2**20

#: What each item of a held reply costs beyond its bytes (a bytes object
#: and its place in a list), in the account.
ITEM_OVERHEAD = 40


class ReplyArray(EncodedArray):
    """
    An L{EncodedArray} made for one reply alone (not shared with other
    replies, unlike C{list}'s): written a piece at a time as any, and
    counted against L{HeldReplies} while its client does not read it.
    """

    __slots__ = ("cost",)

    def __init__(self, items: Sequence[bytes]) -> None:
        super().__init__(items)
        #: What holding it costs, in bytes (its items and their overhead).
        self.cost = sum(len(item) for item in items) + ITEM_OVERHEAD * len(items)


class HeldReplies:
    """
    The bytes of L{ReplyArray}s being written, all connections together.

    @ivar budget: the most held for clients that do not read (the daemon's
        C{DEFAULT_MAX_HELD_REPLIES} unless told).
    @ivar total: what is held now.
    """

    def __init__(self, budget: int = DEFAULT_MAX_HELD_REPLIES) -> None:
        self.budget = budget
        self.total = 0

    def hold(self, cost: int) -> None:
        """A reply of C{cost} bytes is being written."""
        self.total += cost

    def release(self, cost: int) -> None:
        """A reply of C{cost} bytes is written, or let go of."""
        self.total -= cost

    def over(self) -> bool:
        """Is more held than the budget?"""
        return self.total > self.budget
