(** INV-12 asha_rung_progression.

    Model: the ASHA rung budgets are r_k = r0 * eta^k for k = 0 .. n-1 (steps, as nat).
    Claim: for r0 >= 1 and eta >= 2 the rungs are strictly increasing, there are exactly n of
    them and the last one is r0 * eta^(n-1). The pre-registered schedule (r0 = 1000, eta = 3,
    four rungs) is checked by computation.
    Runtime link: igla_jax.prereg validates the rungs it loads from
    assertions/preregistration.json against this rule (tests/test_prereg.py). *)

From Coq Require Import Arith Lia List.
Import ListNotations.

(* 27000 is a large unary nat; Coq builds it via Nat.of_num_uint, which is fine here. *)
Local Set Warnings "-abstract-large-number".


Definition rung (r0 eta k : nat) : nat := r0 * eta ^ k.

Definition rungs (r0 eta n : nat) : list nat := map (rung r0 eta) (seq 0 n).

Lemma rung_step_lt :
  forall r0 eta k, 1 <= r0 -> 2 <= eta -> rung r0 eta k < rung r0 eta (S k).
Proof.
  intros r0 eta k Hr Heta. unfold rung. rewrite Nat.pow_succ_r'.
  assert (0 < eta ^ k) by (apply Nat.neq_0_lt_0, Nat.pow_nonzero; lia).
  nia.
Qed.

Lemma rung_lt :
  forall r0 eta i j, 1 <= r0 -> 2 <= eta -> i < j -> rung r0 eta i < rung r0 eta j.
Proof.
  intros r0 eta i j Hr Heta Hij. induction Hij as [| j Hij IH].
  - apply rung_step_lt; assumption.
  - pose proof (rung_step_lt r0 eta j Hr Heta). lia.
Qed.

Lemma rungs_length : forall r0 eta n, length (rungs r0 eta n) = n.
Proof. intros. unfold rungs. rewrite map_length, seq_length. reflexivity. Qed.

Lemma rungs_nth :
  forall r0 eta n i d, i < n -> nth i (rungs r0 eta n) d = rung r0 eta i.
Proof.
  intros r0 eta n i d Hi. unfold rungs.
  rewrite nth_indep with (d' := rung r0 eta 0) by (rewrite map_length, seq_length; lia).
  rewrite map_nth, seq_nth by lia. reflexivity.
Qed.

Lemma rungs_last :
  forall r0 eta n d, 1 <= n -> last (rungs r0 eta n) d = r0 * eta ^ (n - 1).
Proof.
  intros r0 eta n d Hn. destruct n as [| m]; [lia |].
  unfold rungs. rewrite seq_S, map_app. simpl map at 2. rewrite last_last.
  unfold rung. f_equal. f_equal. lia.
Qed.

(** The registered lemma: strictly increasing, n rungs, last = r0 * eta^(n-1). *)
Theorem asha_rung_progression :
  forall r0 eta n, 1 <= r0 -> 2 <= eta ->
    (forall i j, i < j < n -> nth i (rungs r0 eta n) 0 < nth j (rungs r0 eta n) 0)
    /\ length (rungs r0 eta n) = n
    /\ (1 <= n -> last (rungs r0 eta n) 0 = r0 * eta ^ (n - 1)).
Proof.
  intros r0 eta n Hr Heta. split; [| split].
  - intros i j [Hij Hjn].
    rewrite !rungs_nth by lia. apply rung_lt; assumption.
  - apply rungs_length.
  - apply rungs_last.
Qed.

(** The pre-registered schedule: rungs [1000; 3000; 9000; 27000], eta = 3. *)
Lemma asha_prereg_rungs : rungs 1000 3 4 = [1000; 3000; 9000; 27000].
Proof. vm_compute. reflexivity. Qed.

Corollary asha_prereg_progression :
  (forall i j, i < j < 4 -> nth i (rungs 1000 3 4) 0 < nth j (rungs 1000 3 4) 0)
  /\ last (rungs 1000 3 4) 0 = 27000.
Proof.
  destruct (asha_rung_progression 1000 3 4) as [Hinc [_ Hlast]]; try lia.
  split; [exact Hinc |]. rewrite Hlast by lia. vm_compute. reflexivity.
Qed.
