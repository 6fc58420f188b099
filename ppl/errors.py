"""Error classes raised by ppl.

Every error names the address (and, where relevant, the shapes) at fault so a
user can find the offending line of the model without reading ppl's source.
All of them derive from :class:`PPLError`, so ``except ppl.PPLError`` catches
any modelling mistake ppl detects.
"""

from __future__ import annotations


class PPLError(Exception):
    """Base class of every error ppl raises for a modelling or input mistake."""


class AddressError(PPLError):
    """An address is malformed or used twice in one execution of a model."""


class DuplicateAddressError(AddressError):
    """The same address was visited twice in one run of a generative function."""


class UnvisitedConstraintError(AddressError):
    """A constraint or choice names an address the program never visits."""


class MissingChoiceError(AddressError):
    """``assess`` was given a choice map that lacks a choice the program makes."""


class ConstraintError(PPLError):
    """A constrained value does not fit the distribution at its address."""


class ConstraintShapeError(ConstraintError):
    """A constrained value has a shape different from the distribution's."""


class ConstraintDtypeError(ConstraintError):
    """A constrained value has a dtype the distribution cannot take."""


class NotADistributionError(PPLError, TypeError):
    """Something other than a distribution or generative-function call was sampled."""


class TracedControlFlowError(PPLError):
    """Python control flow (``if``/``while``/``bool``) on a traced random value."""


class SelectionError(PPLError):
    """A selection names addresses that cannot be used the way it was asked."""


class CombinatorError(PPLError):
    """A combinator was built or called with arguments that do not fit."""


class OutsideModelError(PPLError):
    """``ppl.sample``/``@`` was used outside the body of a ``@ppl.gen`` function."""
