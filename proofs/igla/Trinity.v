(** trinity_identity: phi^2 + phi^-2 = 3 for phi = (1 + sqrt 5) / 2, over Coq's reals.

    Runtime link: accelerators.phi_grid.PHI is the float constant the phi-grid (V5) scales its
    lever values by; tests/test_phi_grid.py checks it against this identity within float
    tolerance. *)

From Coq Require Import Reals Lra.
Open Scope R_scope.

Definition phi : R := (1 + sqrt 5) / 2.

Lemma sqrt5_sq : sqrt 5 * sqrt 5 = 5.
Proof. apply sqrt_sqrt. lra. Qed.

Lemma phi_pos : 0 < phi.
Proof. unfold phi. pose proof (sqrt_pos 5). lra. Qed.

(** The golden ratio is the positive root of x^2 = x + 1. *)
Lemma phi_golden : phi * phi = phi + 1.
Proof. unfold phi. pose proof sqrt5_sq. nra. Qed.

Lemma phi_inv : / phi = phi - 1.
Proof.
  pose proof phi_pos. pose proof phi_golden.
  apply Rmult_eq_reg_l with phi; [| lra].
  rewrite Rinv_r by lra. nra.
Qed.

(** The registered lemma. *)
Theorem trinity_identity : phi ^ 2 + / phi ^ 2 = 3.
Proof.
  pose proof phi_golden. pose proof phi_pos.
  rewrite <- pow_inv. rewrite phi_inv. simpl. nra.
Qed.
