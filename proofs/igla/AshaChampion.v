(** INV-2 asha_champion_survives.

    Model: a rung is the list of results recorded there so far, each a finite validation BPB
    [Some b] (a rational, lower is better) or [None] for a diverged trial, which
    igla_jax.race records as +inf. The promotion rule is igla_jax.race.promotable's:
      a result v is promotable when it is finite and the number of results strictly better
      than v at its rung is < max(1, n / eta), with n the number of results at the rung
      (v's own included) and / floor division.
    Claim: the best finite result at a rung is always promotable, for every eta and every rung;
    a diverged result never is; every rung holding a finite result has a promotable one. *)

From Coq Require Import QArith List Arith Lia.
Import ListNotations.

(** [better x v] is true when x is finite and strictly better (lower) than v; +inf never is. *)
Definition better (x : option Q) (v : Q) : bool :=
  match x with Some q => negb (Qle_bool v q) | None => false end.

Definition n_better (rung : list (option Q)) (v : Q) : nat :=
  length (filter (fun x => better x v) rung).

Definition quota (eta n : nat) : nat := Nat.max 1 (n / eta).

Definition promotable (eta : nat) (rung : list (option Q)) (v : option Q) : Prop :=
  match v with
  | Some q => (n_better rung q < quota eta (length rung))%nat
  | None => False
  end.

Lemma better_spec : forall x v, better (Some x) v = true <-> x < v.
Proof.
  intros x v. unfold better. split.
  - intro H. apply Qnot_le_lt. intro Hle.
    apply Qle_bool_iff in Hle. rewrite Hle in H. discriminate.
  - intro H. destruct (Qle_bool v x) eqn:E; [| reflexivity].
    apply Qle_bool_iff in E. exfalso. exact (Qlt_not_le x v H E).
Qed.

Lemma quota_pos : forall eta n, (0 < quota eta n)%nat.
Proof. intros. unfold quota. lia. Qed.

(** m is the best finite result of the rung. *)
Definition is_best (rung : list (option Q)) (m : Q) : Prop :=
  In (Some m) rung /\ forall x, In (Some x) rung -> m <= x.

Lemma n_better_min :
  forall rung m, (forall x, In (Some x) rung -> m <= x) -> n_better rung m = 0%nat.
Proof.
  intros rung m Hmin. unfold n_better.
  induction rung as [| x rest IH]; [reflexivity |].
  simpl. destruct x as [q |]; simpl.
  - destruct (negb (Qle_bool m q)) eqn:E.
    + apply (better_spec q m) in E. exfalso.
      exact (Qlt_not_le q m E (Hmin q (or_introl eq_refl))).
    + apply IH. intros y Hy. apply Hmin. right. exact Hy.
  - apply IH. intros y Hy. apply Hmin. right. exact Hy.
Qed.

(** The registered lemma: the best finite result of a rung is promotable, whatever eta is. *)
Theorem asha_champion_survives :
  forall (eta : nat) (rung : list (option Q)) (m : Q),
    is_best rung m -> promotable eta rung (Some m).
Proof.
  intros eta rung m [_ Hmin]. unfold promotable.
  rewrite (n_better_min rung m Hmin). apply quota_pos.
Qed.

Lemma diverged_never_promotable : forall eta rung, ~ promotable eta rung None.
Proof. intros eta rung H. exact H. Qed.

Lemma rung_has_best :
  forall rung q, In (Some q) rung -> exists m, is_best rung m.
Proof.
  induction rung as [| a rest IH]; intros q Hq; [destruct Hq |].
  destruct (existsb (fun x => match x with Some _ => true | None => false end) rest) eqn:E.
  - apply existsb_exists in E. destruct E as [[q' |] [Hin' Hs]]; [| discriminate Hs].
    destruct (IH q' Hin') as [m [Hin Hmin]].
    destruct a as [a |].
    + destruct (Qlt_le_dec a m) as [Hlt | Hle].
      * exists a. split; [left; reflexivity |]. intros x [Hx | Hx].
        -- injection Hx as ->. apply Qle_refl.
        -- apply Qle_trans with m; [apply Qlt_le_weak; exact Hlt | apply Hmin; exact Hx].
      * exists m. split; [right; exact Hin |]. intros x [Hx | Hx].
        -- injection Hx as ->. exact Hle.
        -- apply Hmin. exact Hx.
    + exists m. split; [right; exact Hin |]. intros x [Hx | Hx]; [discriminate | apply Hmin; exact Hx].
  - (* no finite result in rest: the finite one is the head *)
    assert (Hnone : forall x, ~ In (Some x) rest).
    { intros x Hx. assert (existsb (fun x => match x with Some _ => true | None => false end) rest = true)
        by (apply existsb_exists; exists (Some x); split; [exact Hx | reflexivity]).
      congruence. }
    destruct Hq as [-> | Hq]; [| exfalso; exact (Hnone q Hq)].
    exists q. split; [left; reflexivity |]. intros x [Hx | Hx].
    + injection Hx as ->. apply Qle_refl.
    + exfalso. exact (Hnone x Hx).
Qed.

Corollary rung_always_promotes :
  forall (eta : nat) (rung : list (option Q)) (q : Q),
    In (Some q) rung -> exists m, In (Some m) rung /\ promotable eta rung (Some m).
Proof.
  intros eta rung q Hq. destruct (rung_has_best rung q Hq) as [m Hbest].
  exists m. split; [exact (proj1 Hbest) | apply asha_champion_survives; exact Hbest].
Qed.
