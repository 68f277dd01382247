(** phi_grid_completeness, as a counting fact.

    Model: the V5 phi-grid is the cartesian product of seven levers, each offering two distinct
    values. Claim: the product enumerates exactly the 2^7 = 128 choice vectors, each once:
    128 entries, no duplicates, and a vector is listed iff each coordinate is one of its
    lever's values.
    What Coq cannot see: that accelerators.phi_grid.phi_grid really is this product of seven
    two-valued levers (the earlier Rust iterator indexed levers by i mod 5 and produced 5
    configs). tests/test_phi_grid.py::test_phi_grid_enumerates_all_128 is that runtime link. *)

From Coq Require Import List Arith Lia.
Import ListNotations.

Section Product.
Variable A : Type.

(** All vectors choosing one value per lever, in lexicographic order. *)
Fixpoint product (levers : list (list A)) : list (list A) :=
  match levers with
  | [] => [[]]
  | l :: rest => flat_map (fun x => map (cons x) (product rest)) l
  end.

Lemma flat_map_cons_length :
  forall (l : list A) (p : list (list A)),
    length (flat_map (fun x => map (cons x) p) l) = length l * length p.
Proof.
  intros l p. induction l as [| x xs IH]; [reflexivity |].
  simpl. rewrite app_length, map_length, IH. reflexivity.
Qed.

Lemma product_length :
  forall levers, length (product levers) = fold_right (fun l n => length l * n) 1 levers.
Proof.
  induction levers as [| l rest IH]; [reflexivity |].
  simpl. rewrite flat_map_cons_length, IH. reflexivity.
Qed.

Lemma product_length_uniform :
  forall k levers, Forall (fun l => length l = k) levers ->
    length (product levers) = k ^ length levers.
Proof.
  intros k levers H. rewrite product_length.
  induction H as [| l rest Hl _ IH]; [reflexivity |].
  simpl. rewrite Hl, IH. reflexivity.
Qed.

Lemma NoDup_app_disjoint :
  forall (a b : list (list A)), NoDup a -> NoDup b ->
    (forall x, In x a -> ~ In x b) -> NoDup (a ++ b).
Proof.
  intros a b Ha Hb Hdis. induction Ha as [| x xs Hx Hxs IH]; [exact Hb |].
  simpl. constructor.
  - rewrite in_app_iff. intros [H | H]; [exact (Hx H) | exact (Hdis x (or_introl eq_refl) H)].
  - apply IH. intros y Hy. apply Hdis. right. exact Hy.
Qed.

Lemma NoDup_map_cons :
  forall (x : A) (p : list (list A)), NoDup p -> NoDup (map (cons x) p).
Proof.
  intros x p H. induction H as [| c cs Hc Hcs IH]; simpl; constructor; [| exact IH].
  rewrite in_map_iff. intros [c' [Heq Hin]]. injection Heq as ->. exact (Hc Hin).
Qed.

Lemma product_nodup : forall levers, Forall (@NoDup A) levers -> NoDup (product levers).
Proof.
  intros levers H. induction H as [| l rest Hl Hrest IH]; simpl; [constructor; [intros [] | constructor] |].
  induction Hl as [| x xs Hx Hxs IHl]; simpl; [constructor |].
  apply NoDup_app_disjoint; [apply NoDup_map_cons; exact IH | exact IHl |].
  intros c Hc Hc'. apply in_map_iff in Hc. destruct Hc as [v [<- _]].
  apply in_flat_map in Hc'. destruct Hc' as [y [Hy Hin]].
  apply in_map_iff in Hin. destruct Hin as [v' [Heq _]]. injection Heq as -> _.
  exact (Hx Hy).
Qed.

Lemma product_in :
  forall levers c, In c (product levers) <-> Forall2 (fun x l => In x l) c levers.
Proof.
  induction levers as [| l rest IH]; intro c; simpl.
  - split.
    + intros [<- | []]. constructor.
    + intro H. inversion H. left. reflexivity.
  - rewrite in_flat_map. split.
    + intros [x [Hx Hin]]. apply in_map_iff in Hin. destruct Hin as [c' [<- Hc']].
      constructor; [exact Hx | apply IH; exact Hc'].
    + intro H. inversion H as [| x l' c' rest' Hx Hc']; subst.
      exists x. split; [exact Hx |]. apply in_map. apply IH. exact Hc'.
Qed.

End Product.

Arguments product {A} levers.

(** The registered lemma: seven two-valued levers give exactly 128 distinct configs, all of them. *)
Theorem phi_grid_completeness :
  forall (A : Type) (levers : list (list A)),
    length levers = 7 -> Forall (fun l => length l = 2 /\ NoDup l) levers ->
    length (product levers) = 128
    /\ NoDup (product levers)
    /\ (forall c, In c (product levers) <-> Forall2 (fun x l => In x l) c levers).
Proof.
  intros A levers H7 H. split; [| split].
  - rewrite (product_length_uniform A 2 levers), H7; [reflexivity |].
    eapply Forall_impl; [| exact H]. intros l [Hl _]. exact Hl.
  - apply product_nodup. eapply Forall_impl; [| exact H]. intros l [_ Hl]. exact Hl.
  - apply product_in.
Qed.
