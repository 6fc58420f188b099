"""Error classes raised by ppl.

Every error names the address (and, where relevant, the shapes) at fault so a
user can find the offending line of the model without reading ppl's source.
All of them derive from :class:`PPLError`, so ``except ppl.PPLError`` catches
any modelling mistake ppl detects.
"""

from __future__ import annotations


class PPLError(Exception):
    """Base class of every error ppl raises for a modelling or input mistake."""


class ArgumentError(PPLError, TypeError):
    """A GFI method or entry point was called with an argument of the wrong kind (args not a tuple, no key)."""


class ForeignPrimitiveError(PPLError):
    """A primitive of another library (``numpyro.sample``, ``numpyro.plate``, ...) ran inside a ppl model."""


class AddressError(PPLError):
    """An address is malformed or used twice in one execution of a model."""


class DuplicateAddressError(AddressError):
    """The same address was visited twice in one run of a generative function."""


class MissingAddressError(AddressError, KeyError):
    """A choice map or trace was indexed at an address it does not hold; the message lists those it has."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class MaskedEntriesError(AddressError, ValueError):
    """A choice map with masked entries was read as if every entry were present (``flat_dict``)."""


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


class SelectionError(PPLError, TypeError):
    """A selection names addresses that cannot be used the way it was asked."""


class CombinatorError(PPLError):
    """A combinator was built or called with arguments that do not fit."""


class OutsideModelError(PPLError):
    """``ppl.sample``/``@`` was used outside the body of a ``@ppl.gen`` function."""


class InferenceError(PPLError):
    """An inference algorithm cannot run on the model and input as given."""


class InitializationError(InferenceError):
    """No initial point with a finite log density (and gradient) was found."""


class GuideError(PPLError):
    """An automatic guide cannot be built for the model, or a guide does not match the model's latents."""


class FitError(PPLError):
    """``ppl.vi.fit`` was given an objective, data or checkpoint it cannot train with."""


class NonFiniteObjectiveError(FitError):
    """The objective or its gradient became non-finite during ``fit``.

    ``.step`` is the step at fault; ``.result`` holds the last good
    parameters, optimiser state and history (the checkpoint, if any, was
    written from them).
    """

    def __init__(self, message: str, step: int, result: object):
        super().__init__(message)
        self.step = step
        self.result = result


class DegenerateWeightsError(InferenceError):
    """Every particle's importance weight is ``-inf`` or NaN: no particle is consistent with the data."""


class EstimatorError(PPLError):
    """A gradient estimator cannot be used for a choice (``ppl.vi``), or an objective is malformed."""


class DegeneracyWarning(UserWarning):
    """A particle method's final cloud has collapsed (few distinct particles): its estimates are unreliable."""


class ConvergenceWarning(UserWarning):
    """The chains of an MCMC run disagree: some split R-hat exceeds the threshold (1.01)."""


class EnumerationError(PPLError):
    """A discrete choice cannot be summed out (infinite or traced support, too many values, a value escaping)."""


class AmortizedError(PPLError):
    """Neural posterior estimation was given addresses, shapes, networks or observations that do not fit."""


class FlowError(PPLError):
    """A normalizing flow was built or used with the wrong dimension, context shape or data."""


class ConditionalChoiceError(InferenceError):
    """A latent choice exists in some branches of a ``ppl.switch``/``ppl.cond``/``ppl.mixture`` only."""


class ArgumentValueError(PPLError, ValueError):
    """An argument of an entry point has the right kind but a value or shape outside what it accepts.

    The message names the argument, the value (or shape) given and the range
    (or shape) expected, e.g. ``target_accept must be in (0, 1), got 1.5``.
    """


class MissingDrawsError(PPLError, KeyError):
    """An MCMC result was indexed by a name or address it has no draws for; the message lists those it has."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class TransformError(PPLError):
    """A model transformation (``condition``, ``substitute``, ``do``, ``reparam``) was misused."""
