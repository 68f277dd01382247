(** V7, the online curriculum: its selection rule (proven) and its empirical claim (NOT proven).

    The trainer (igla_jax/train.py, [curriculum_select]) draws factor x B candidate sequences,
    scores each by its loss, and trains on B of them: first every candidate at or above the
    running quantile [t] ("not yet learned"), in draw order, then, while places are left, the
    learned ones (below [t]) by decreasing loss. Modelled on lists of losses: the kept batch is
    [firstn B (filter (above t) xs ++ rest)], where [rest] is the learned candidates in any order.

    [curriculum_drops_learned_first] (closed): a learned candidate is kept only when fewer than B
    unlearned ones were drawn, and then every unlearned one is kept. This is what makes the
    static-shape rule a faithful "drop the sequences below the running median".

    [curriculum_wallclock_gain] is about measurements of real training runs, which Coq cannot
    see: declared as [Parameter]s and closed with [Admitted], like proofs/igla/Empirical.v. Its
    evidence is the study and verdict named in assertions/igla_assertions.json. It is
    satisfiable (e.g. equal variances and a lower curriculum BPB). *)

From Coq Require Import QArith List.
Import ListNotations.

(** A candidate is not yet learned when its loss is at or above the threshold. *)
Definition above (t x : Q) : bool := Qle_bool t x.

Definition kept (t : Q) (b : nat) (xs rest : list Q) : list Q :=
  firstn b (filter (above t) xs ++ rest).

Lemma in_firstn : forall (A : Type) (n : nat) (l : list A) (y : A), In y (firstn n l) -> In y l.
Proof.
  intros A n l y H. rewrite <- (firstn_skipn n l). apply in_or_app. left. exact H.
Qed.

Theorem curriculum_drops_learned_first :
  forall (t : Q) (b : nat) (xs rest : list Q),
    (forall y, In y rest -> above t y = false) ->
    ((b <= length (filter (above t) xs))%nat -> forall y, In y (kept t b xs rest) -> above t y = true)
    /\ ((length (filter (above t) xs) <= b)%nat ->
        forall y, In y xs -> above t y = true -> In y (kept t b xs rest)).
Proof.
  intros t b xs rest _. unfold kept. split.
  - intros Hle y Hy. rewrite firstn_app in Hy.
    replace (b - length (filter (above t) xs))%nat with 0%nat in Hy
      by (symmetry; apply Nat.sub_0_le; exact Hle).
    rewrite firstn_O, app_nil_r in Hy.
    apply in_firstn in Hy. apply filter_In in Hy. destruct Hy as [_ H]. exact H.
  - intros Hle y Hin Ha. rewrite firstn_app, (firstn_all2 _ Hle).
    apply in_or_app. left. apply filter_In. split; assumption.
Qed.

(** --- The empirical claim (seed mode 7), measured by experiments/curriculum_study.py. --- *)

(** Across-seed variance of validation BPB at matched optimizer steps, per arm (pooled over configs). *)
Parameter var_curriculum : Q.
Parameter var_baseline : Q.
(** Mean validation BPB at matched training wall-clock, per arm. *)
Parameter bpb_wallclock_curriculum : Q.
Parameter bpb_wallclock_baseline : Q.
(** Pre-registered bound (curriculum_var_increase_max in assertions/preregistration.json). *)
Parameter curriculum_var_increase_max : Q.

Theorem curriculum_wallclock_gain :
  var_curriculum <= (1 + curriculum_var_increase_max) * var_baseline
  /\ bpb_wallclock_curriculum < bpb_wallclock_baseline.
Admitted.
