"""What a config asks for, decided once: the method, whether G and D are class-conditional, which
head of D the attacks and metrics use, which stages the method has and what each `--mode` trains.

`main.py` and the API (`api.load`, `workdir.load_weights` of a workdir's own config) build the
`Task` with `Task.from_config`; the stages, the evaluators, the step factories and the losses
receive it. Words, as the field has them: the methods Rob-GAN ('robgan'), AS-GAN ('asgan') and
the Madry baseline ('madry'); the stages co-training ('cotrain', step 1), fine-tuning
('finetune', step 2) and Madry training ('madry'); evaluation (`--mode=eval`).
"""

import dataclasses
from typing import Callable, Tuple

METHODS = ('robgan', 'asgan', 'madry')
MODES = ('train', 'finetune', 'eval')  # main.py --mode.
STAGES = ('cotrain', 'finetune', 'madry')
_STAGES_OF = {'robgan': ('cotrain', 'finetune'), 'asgan': ('cotrain',), 'madry': ('madry',)}
# What each stage is called in messages, and the --mode that trains it.
STAGE_TITLES = {'cotrain': 'co-training', 'finetune': 'fine-tuning', 'madry': 'Madry training'}
_STAGE_MODE = {'cotrain': 'train', 'finetune': 'finetune', 'madry': 'train'}


@dataclasses.dataclass(frozen=True)
class Task:
  """A method and its class count.

  Attributes:
    method: 'robgan' (Rob-GAN: step 1 co-training, step 2 fine-tuning), 'asgan' (AS-GAN or the
      vanilla GAN: unconditional co-training only) or 'madry' (adversarial training of D as a
      classifier, no G).
    num_classes: classes of G's labels and D's class head; 0 for an unconditional model.
  """
  method: str
  num_classes: int

  @classmethod
  def from_config(cls, config) -> 'Task':
    """The task of a full config.

    Raises:
      ValueError: an unknown method, or a class count the method cannot have (Rob-GAN and
        Madry need classes, AS-GAN has none).
    """
    task = cls(method=config.method, num_classes=config.model.num_classes)
    if task.method not in METHODS:
      raise ValueError(f'method must be one of {METHODS}, got {task.method!r}')
    if task.conditional != (task.method != 'asgan'):
      needed = 'model.num_classes=0' if task.method == 'asgan' else 'model.num_classes >= 1'
      raise ValueError(f'method {task.method!r} needs {needed} (Rob-GAN and the Madry baseline '
                       'are class-conditional, AS-GAN unconditional), got '
                       f'model.num_classes={task.num_classes}')
    return task

  @property
  def conditional(self) -> bool:
    return self.num_classes > 0

  @property
  def head(self) -> str:
    """The head of D whose robustness is measured, and the `losses.ATTACK_OBJECTIVES` its attack
    ascends: 'class' (its classifier), or 'source' for an unconditional model (real images still
    called real under PGD pushing them to "fake")."""
    return 'class' if self.conditional else 'source'

  @property
  def cotrain_objective(self) -> str:
    """What co-training's attack on real images ascends (`losses.ATTACK_OBJECTIVES`): D's
    non-saturating loss on them, 'real' (both heads; official `attack_Linf_PGD`) or, for an
    unconditional D, 'source' (official `attack_Linf_PGD_bin`)."""
    return 'real' if self.conditional else 'source'

  @property
  def label_range(self) -> int:
    """Labels for G are drawn from [0, label_range): the classes, or only 0 when unconditional
    (G ignores it)."""
    return max(self.num_classes, 1)

  @property
  def stages(self) -> Tuple[str, ...]:
    """The stages the method trains, in order; each has its checkpoints (`workdir`)."""
    return _STAGES_OF[self.method]

  def training_stage(self, mode: str) -> str:
    """The stage `--mode=train` or `--mode=finetune` trains.

    Raises:
      ValueError: an unknown mode, or one the method does not have (`classifier_stage`; the Madry
        baseline trains its classifier with --mode=train).
    """
    if mode not in ('train', 'finetune'):
      raise ValueError(f'a training mode is train or finetune, got {mode!r}')
    if mode == 'train':
      return self.stages[0]
    if self.method == 'madry':
      raise ValueError("--mode=finetune is step 2 of Rob-GAN; method 'madry' trains its "
                       'classifier with --mode=train')
    return self.classifier_stage

  @property
  def classifier_stage(self) -> str:
    """The stage that trains D's classifier: 'finetune' (Rob-GAN step 2) or 'madry'.

    Raises:
      ValueError: an unconditional GAN, whose D has no classifier.
    """
    if not self.conditional:
      raise ValueError(f'method {self.method!r} with model.num_classes={self.num_classes} is an '
                       'unconditional GAN: its discriminator has no classifier to fine-tune or '
                       'to train (--mode=finetune and the Madry baseline need method robgan or '
                       'madry with model.num_classes >= 1)')
    return self.stages[-1]

  def resolve_stage(self, stage: str, has_checkpoint: Callable[[str], bool],
                    where: Callable[[str], str]) -> str:
    """Which trained stage `stage` means: 'latest' is the last stage of the method that has a
    checkpoint (fine-tuned D if step 2 ran, else the co-trained one).

    Args:
      stage: 'latest' or one of `STAGES`.
      has_checkpoint: whether a stage has a checkpoint.
      where: a stage's checkpoint directory, for the error message.

    Raises:
      ValueError: an unknown stage, or one the method does not have.
      FileNotFoundError: no checkpoint of that stage.
    """
    if stage not in ('latest',) + STAGES:
      raise ValueError(f'stage must be one of {("latest",) + STAGES}, got {stage!r}')
    if stage == 'latest':
      stage = next((s for s in reversed(self.stages) if has_checkpoint(s)), self.stages[0])
    elif stage not in self.stages:
      raise ValueError(f'a {self.method!r} workdir has no {stage!r} stage (it has '
                       f'{self.stages})')
    if not has_checkpoint(stage):
      raise FileNotFoundError(f'no {STAGE_TITLES[stage]} checkpoint in {where(stage)}: run '
                              f'--mode={_STAGE_MODE[stage]} first')
    return stage

  def has_generator(self, stage: str) -> bool:
    """Whether the checkpoints of a stage hold a G (all but the Madry baseline's)."""
    return stage != 'madry'
