(** INV-6 ema_decay_valid.

    Model: one coordinate of the JEPA target network, updated after each step by
      x_{t+1} = beta * x_t + (1 - beta) * u_t
    with u_t the online network's value (igla_jax.models.jepa.ema_update applies this to every
    leaf of the parameter tree, coordinate by coordinate).
    Claim: for 0 < beta < 1 the average never leaves [min, max] of the initial value and the
    inputs seen so far. Exact real arithmetic; float rounding is not modelled (the runtime test
    checks the float version with a tolerance). *)

From Coq Require Import Reals Lra List.
Import ListNotations.
Open Scope R_scope.

Definition ema_step (beta x u : R) : R := beta * x + (1 - beta) * u.

(** The average after feeding the inputs [us] in order, starting from [x0]. *)
Definition ema (beta x0 : R) (us : list R) : R := fold_left (ema_step beta) us x0.

Lemma ema_step_bounded :
  forall beta lo hi x u, 0 < beta < 1 -> lo <= x <= hi -> lo <= u <= hi ->
    lo <= ema_step beta x u <= hi.
Proof. intros. unfold ema_step. split; nra. Qed.

Lemma ema_bounded :
  forall beta lo hi us x0, 0 < beta < 1 -> lo <= x0 <= hi ->
    Forall (fun u => lo <= u <= hi) us -> lo <= ema beta x0 us <= hi.
Proof.
  intros beta lo hi us. unfold ema. induction us as [| u rest IH]; intros x0 Hb Hx Hus.
  - exact Hx.
  - inversion Hus as [| ? ? Hu Hrest]; subst. simpl.
    apply IH; [exact Hb | apply ema_step_bounded; assumption | exact Hrest].
Qed.

Definition lo_of (x0 : R) (us : list R) : R := fold_right Rmin x0 us.
Definition hi_of (x0 : R) (us : list R) : R := fold_right Rmax x0 us.

Lemma lo_of_bounds : forall x0 us, lo_of x0 us <= x0 /\ Forall (fun u => lo_of x0 us <= u) us.
Proof.
  intros x0 us. induction us as [| u rest [H0 Hrest]]; simpl.
  - split; [lra | constructor].
  - unfold lo_of in *; simpl. split.
    + eapply Rle_trans; [apply Rmin_r | exact H0].
    + constructor; [apply Rmin_l |].
      eapply Forall_impl; [| exact Hrest].
      intros a Ha. eapply Rle_trans; [apply Rmin_r | exact Ha].
Qed.

Lemma hi_of_bounds : forall x0 us, x0 <= hi_of x0 us /\ Forall (fun u => u <= hi_of x0 us) us.
Proof.
  intros x0 us. induction us as [| u rest [H0 Hrest]]; simpl.
  - split; [lra | constructor].
  - unfold hi_of in *; simpl. split.
    + eapply Rle_trans; [exact H0 | apply Rmax_r].
    + constructor; [apply Rmax_l |].
      eapply Forall_impl; [| exact Hrest].
      intros a Ha. eapply Rle_trans; [exact Ha | apply Rmax_r].
Qed.

(** The registered lemma: the EMA stays within [min, max] of the initial value and inputs. *)
Theorem ema_decay_valid :
  forall beta x0 us, 0 < beta < 1 ->
    lo_of x0 us <= ema beta x0 us <= hi_of x0 us.
Proof.
  intros beta x0 us Hb.
  destruct (lo_of_bounds x0 us) as [Hlo0 Hlo]. destruct (hi_of_bounds x0 us) as [Hhi0 Hhi].
  apply ema_bounded; [exact Hb | split; assumption |].
  apply Forall_forall. intros a Ha. split.
  - exact (proj1 (Forall_forall _ _) Hlo a Ha).
  - exact (proj1 (Forall_forall _ _) Hhi a Ha).
Qed.
