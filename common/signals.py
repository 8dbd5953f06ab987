"""What one domain app tells another without importing it.

billing sends these from the Stripe webhook, inside the transaction that records the event; loyalty
receives them (connected in LoyaltyConfig.ready) and answers with the points it moved, which billing
adds to the subscription's `points_earned`. Receivers run in the sender's transaction (`send`, not
`send_robust`): a receiver's error rolls the whole event back, as the direct call did before.

Keyword arguments of both: `intent` (a billing PaymentIntent: pk, stripe_payment_intent_id, user_id,
subscription_id, currency, amount_received, amount_refunded, amount_disputed_lost) and `using` (the
database alias). A receiver returns the points it moved (an int) or None when it moved none.
"""

from __future__ import annotations

from django.dispatch import Signal

# A payment intent succeeded for the first time; also `points_per_unit` (a Decimal > 0: points per
# whole unit of the intent's currency). Receivers award at most once per intent (a redelivered
# event is sent again): the points awarded (> 0), or None.
payment_succeeded = Signal()

# The amount a succeeded payment keeps may have gone down (a refund, a lost dispute), or a loss
# that arrived before the success is to be settled now. Sent again on redelivery: receivers settle
# from the intent's cumulative amounts, so nothing is taken twice. The points taken back (< 0), or None.
payment_reduced = Signal()


def points_moved(responses: list[tuple[object, object]]) -> int | None:
    """The points the receivers of one `send` moved, added up; None when none moved any."""
    points = [response for _, response in responses if response]
    return sum(points) if points else None
