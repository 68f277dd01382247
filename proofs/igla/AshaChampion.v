(** INV-2 asha_champion_survives.

    Model: a rung is the list of validation BPB values recorded there so far (rationals, lower
    is better). The promotion rule is the one igla_jax.race.promotable applies:
      a result v is promotable when the number of results strictly better than v at its rung
      is < max(1, n / eta), with n the number of results at the rung and / floor division.
    Claim: the best (minimum) result at a rung is always promotable, for every eta and every
    rung; and every non-empty rung has a promotable result.
    Not modelled: NaN. Under IEEE comparisons a NaN is never strictly better than anything, so
    a diverged trial in the rung can only raise n (and the quota), never count against the
    champion. *)

From Coq Require Import QArith List Arith Lia.
Import ListNotations.

(** [better x v] is true when x is strictly better (lower) than v. *)
Definition better (x v : Q) : bool := negb (Qle_bool v x).

Definition n_better (rung : list Q) (v : Q) : nat := length (filter (fun x => better x v) rung).

Definition quota (eta n : nat) : nat := Nat.max 1 (n / eta).

Definition promotable (eta : nat) (rung : list Q) (v : Q) : Prop :=
  (n_better rung v < quota eta (length rung))%nat.

Lemma better_spec : forall x v, better x v = true <-> x < v.
Proof.
  intros x v. unfold better. split.
  - intro H. apply Qnot_le_lt. intro Hle.
    apply Qle_bool_iff in Hle. rewrite Hle in H. discriminate.
  - intro H. destruct (Qle_bool v x) eqn:E; [| reflexivity].
    apply Qle_bool_iff in E. exfalso. exact (Qlt_not_le x v H E).
Qed.

Lemma quota_pos : forall eta n, (0 < quota eta n)%nat.
Proof. intros. unfold quota. lia. Qed.

Lemma n_better_min :
  forall rung m, (forall x, In x rung -> m <= x) -> n_better rung m = 0%nat.
Proof.
  intros rung m Hmin. unfold n_better.
  induction rung as [| x rest IH]; [reflexivity |].
  simpl. destruct (better x m) eqn:E.
  - apply better_spec in E. exfalso.
    exact (Qlt_not_le x m E (Hmin x (or_introl eq_refl))).
  - apply IH. intros y Hy. apply Hmin. right. exact Hy.
Qed.

(** The registered lemma: the minimum of a rung is promotable, whatever eta is. *)
Theorem asha_champion_survives :
  forall (eta : nat) (rung : list Q) (m : Q),
    In m rung -> (forall x, In x rung -> m <= x) -> promotable eta rung m.
Proof.
  intros eta rung m _ Hmin. unfold promotable.
  rewrite (n_better_min rung m Hmin). apply quota_pos.
Qed.

Lemma rung_has_min :
  forall rung : list Q, rung <> [] -> exists m, In m rung /\ forall x, In x rung -> m <= x.
Proof.
  induction rung as [| a rest IH]; intro Hne; [contradiction |].
  destruct rest as [| b rest'].
  - exists a. split; [left; reflexivity |]. intros x [Hx | []]. subst. apply Qle_refl.
  - destruct IH as [m [Hin Hmin]]; [discriminate |].
    destruct (Qlt_le_dec a m) as [Hlt | Hle].
    + exists a. split; [left; reflexivity |]. intros x [Hx | Hx].
      * subst. apply Qle_refl.
      * apply Qle_trans with m; [apply Qlt_le_weak; exact Hlt | apply Hmin; exact Hx].
    + exists m. split; [right; exact Hin |]. intros x [Hx | Hx].
      * subst. exact Hle.
      * apply Hmin. exact Hx.
Qed.

Corollary rung_always_promotes :
  forall (eta : nat) (rung : list Q), rung <> [] -> exists m, In m rung /\ promotable eta rung m.
Proof.
  intros eta rung Hne. destruct (rung_has_min rung Hne) as [m [Hin Hmin]].
  exists m. split; [exact Hin | apply asha_champion_survives; assumption].
Qed.
