"""The recommendation engine on a tiny real bundle: classify, recommend, lookups, thumbnails."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from jewelry_pipeline.core.answers import AnswerPolicy
from jewelry_pipeline.core.bundle import BundleError, bundle_digest, read_bundle
from jewelry_pipeline.core.images import ImageRejected
from jewelry_pipeline.core.substyles import EditRefused
from jewelry_pipeline.serving.engine import NotFound, RecommendationEngine
from tests.serving.conftest import (
    CLASSES,
    COMBINED_WEIGHT,
    IMAGE_SIZE,
    PER_CLASS,
    catalog_photos,
    jpeg,
    make_bundle,
)

PHOTOS = catalog_photos()  # the photos of the items of the bundles made with seed 0


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> RecommendationEngine:
    return RecommendationEngine(read_bundle(tiny_bundle), "tiny")


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return read_bundle(tiny_bundle)


def test_features_match_the_classifier_and_its_embedding(engine, bundle):
    images = PHOTOS[:4]
    query = engine.features(images)
    expected = bundle.classifier.predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(query.probabilities, expected, atol=1e-5)
    assert query.vectors.shape[:2] == (4, 1)
    np.testing.assert_allclose(query.vectors[:, 0], bundle.index["vectors"][:4], atol=1e-5)
    assert [len(one.probabilities) for one in query.photos()] == [1, 1, 1, 1]


def test_features_refuse_wrong_shapes(engine):
    with pytest.raises(ValueError, match="shape"):
        engine.features(np.zeros((1, IMAGE_SIZE + 1, IMAGE_SIZE, 3), np.uint8))


def test_classify_returns_a_distribution_over_the_bundle_classes(engine, tiny_bundle):
    features = engine.features(engine.prepare(jpeg())[None])
    result = engine.classify(features)
    assert set(result["probabilities"]) == set(CLASSES)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["category"] == max(result["probabilities"], key=result["probabilities"].get)
    assert result["model_version"]["bundle_digest"] == bundle_digest(tiny_bundle)[:16]
    assert "tiny" not in str(result["model_version"]) and str(tiny_bundle) not in str(
        result["model_version"]
    )


def test_a_catalog_item_finds_itself_first(engine, bundle):
    features = engine.features(PHOTOS[7:8])
    result = engine.recommend(features, k=5)
    assert result["items"][0]["item_id"] == "item007"
    assert result["items"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    scores = [item["score"] for item in result["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert result["cluster"] in (0, 1)


def test_category_filter_keeps_only_that_category(engine):
    features = engine.features(engine.prepare(jpeg(3))[None])
    result = engine.recommend(features, k=50, category=engine.check_category("ring"))
    assert len(result["items"]) == PER_CLASS
    assert {item["category"] for item in result["items"]} == {"ring"}
    with pytest.raises(NotFound, match="unknown category"):
        engine.check_category("tiara")
    assert engine.check_category("") is None


def test_recommend_by_id_excludes_the_item_itself(engine):
    result = engine.recommend_by_id("item003", k=4)
    assert result["item"]["item_id"] == "item003"
    assert len(result["items"]) == 4 and "item003" not in [
        item["item_id"] for item in result["items"]
    ]
    with pytest.raises(NotFound):
        engine.recommend_by_id("nope", 3)


def test_thumbnail_is_the_items_photo_as_jpeg(engine):
    jpeg_bytes = engine.thumbnail_jpeg("item011")
    assert jpeg_bytes[:3] == b"\xff\xd8\xff"
    decoded = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(jpeg_bytes, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert decoded.shape == PHOTOS[11].shape  # never enlarged beyond the photo
    assert np.abs(decoded.astype(int) - PHOTOS[11]).mean() < 12  # the same photo, JPEG-compressed
    assert np.abs(decoded.astype(int) - PHOTOS[12]).mean() > 30  # not another one
    with pytest.raises(NotFound):
        engine.thumbnail_jpeg("../../etc/passwd")


def test_catalog_summary_and_pages(engine):
    summary = engine.catalog_summary()
    assert summary["total"] == PER_CLASS * len(CLASSES)
    assert [c["name"] for c in summary["categories"]] == CLASSES
    assert all(
        sum(k["count"] for k in c["clusters"]) == c["count"] == PER_CLASS
        for c in summary["categories"]
    )
    page = engine.catalog_items("necklace", 1, offset=2, limit=3)
    assert page["total"] == PER_CLASS // 2 and len(page["items"]) == 3
    assert all(item["category"] == "necklace" and item["cluster"] == 1 for item in page["items"])


def test_the_shops_sub_style_names_are_in_every_answer(tmp_path, engine):
    """Written into the bundle, read back, and named wherever a sub-style is: the catalog summary,
    catalog pages, similar items and a photo's own sub-style; unnamed ones stay None."""
    criterion = {"necklace": {"k": 2, "silhouette_by_k": {"2": 0.4, "3": 0.3}}}
    names = {"names": {"necklace": {"1": "Chains"}}, "criterion": criterion}
    named = RecommendationEngine(read_bundle(make_bundle(tmp_path / "b", substyles=names)))
    assert read_bundle(tmp_path / "b").substyles == names
    assert named.substyles("necklace")["criterion"] == criterion["necklace"]
    assert named.substyles("ring")["criterion"] is None
    necklace = next(c for c in named.catalog_summary()["categories"] if c["name"] == "necklace")
    assert {c["cluster"]: c["name"] for c in necklace["clusters"]} == {0: None, 1: "Chains"}
    page = named.catalog_items("necklace", None, offset=0, limit=50)["items"]
    assert {(i["cluster"], i["cluster_name"]) for i in page} == {(0, None), (1, "Chains")}
    photo = int(np.flatnonzero(named.catalog["category"] == "necklace")[1])
    result = named.recommend(named.features(PHOTOS[photo : photo + 1]), 5)
    assert result["cluster_name"] == named.cluster_name(result["category"], result["cluster"])
    for item in result["items"]:
        assert item["cluster_name"] == named.cluster_name(item["category"], item["cluster"])
    assert engine.catalog_items("necklace", 1, 0, 1)["items"][0]["cluster_name"] is None


def test_a_categorys_sub_styles_show_their_typical_and_edge_items(engine):
    view = engine.substyles("necklace")
    assert view["k"] == 2 and not view["preview"] and view["criterion"] is None
    assert sum(s["count"] for s in view["substyles"]) == PER_CLASS
    for substyle in view["substyles"]:
        typical, edge = substyle["typical"], substyle["edge"]
        assert 0 < len(typical) <= 8 and len(edge) <= 4
        assert len(typical) + len(edge) <= substyle["count"]
        assert not {i["item_id"] for i in typical} & {i["item_id"] for i in edge}
        for item in typical + edge:
            assert item["category"] == "necklace" and item["cluster"] == substyle["cluster"]
        scores = [i["score"] for i in typical] + [i["score"] for i in reversed(edge)]
        assert scores == sorted(scores, reverse=True)  # nearest the centroid first, edge last


def test_a_preview_of_another_k_is_computed_not_saved_and_repeats_itself(engine):
    preview = engine.substyles("necklace", k=3)
    assert preview["preview"] and preview["k"] == 3
    assert sum(s["count"] for s in preview["substyles"]) == PER_CLASS
    assert all(s["name"] is None for s in preview["substyles"])
    again = engine.substyles("necklace", k=3)
    assert [s["typical"] for s in again["substyles"]] == [
        s["typical"] for s in preview["substyles"]
    ]
    assert engine.substyles("necklace")["k"] == 2  # the served sub-styles are unchanged
    for bad in (1, 13, PER_CLASS + 1, "3", True):
        with pytest.raises(EditRefused):
            engine.substyles("necklace", k=bad)
    with pytest.raises(NotFound):
        engine.substyles("")


def test_a_bundle_with_a_bad_sub_style_name_is_refused(bundle):
    broken = dataclasses.replace(
        bundle, config={**bundle.config, "substyles": {"names": {"ring": {"0": "\x00"}}}}
    )
    with pytest.raises(BundleError, match="substyles.names.ring"):
        RecommendationEngine(broken)


def test_uploads_go_through_the_shared_decoder(engine):
    with pytest.raises(ImageRejected) as refused:
        engine.prepare(b"GIF89a" + bytes(100))
    assert refused.value.reason == "unsupported_format"
    assert engine.prepare(jpeg(size=(300, 120))).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)


def test_a_bundle_indexing_a_source_the_service_cannot_embed_is_refused(bundle):
    bundle.index = {**bundle.index, "source": np.array("pca")}
    with pytest.raises(BundleError, match="pca"):
        RecommendationEngine(bundle)


@pytest.fixture(scope="module")
def autoencoder_engine(tiny_autoencoder_bundle) -> RecommendationEngine:
    return RecommendationEngine(read_bundle(tiny_autoencoder_bundle), "tiny-ae")


@pytest.fixture(scope="module")
def descriptor_engine(tiny_descriptor_bundle) -> RecommendationEngine:
    return RecommendationEngine(read_bundle(tiny_descriptor_bundle), "tiny-descriptor")


@pytest.fixture(scope="module")
def photo_autoencoder_engine(tiny_photo_autoencoder_bundle) -> RecommendationEngine:
    return RecommendationEngine(read_bundle(tiny_photo_autoencoder_bundle), "tiny-photo-ae")


@pytest.fixture(scope="module")
def backbone_engine(tiny_backbone_bundle) -> RecommendationEngine:
    return RecommendationEngine(read_bundle(tiny_backbone_bundle), "tiny-backbone")


@pytest.fixture(scope="module")
def ensemble_engine(tiny_ensemble_bundle) -> RecommendationEngine:
    return RecommendationEngine(read_bundle(tiny_ensemble_bundle), "tiny-ensemble")


@pytest.fixture(scope="module")
def combined_engine(tiny_combined_bundle) -> RecommendationEngine:
    return RecommendationEngine(read_bundle(tiny_combined_bundle), "tiny-combined")


def test_autoencoder_features_hold_one_unit_vector_per_category(
    autoencoder_engine, tiny_autoencoder_bundle
):
    bundle = read_bundle(tiny_autoencoder_bundle)
    per_category = autoencoder_engine.features(PHOTOS[12:13]).vectors[0]
    assert per_category.shape[0] == len(CLASSES)
    np.testing.assert_allclose(np.linalg.norm(per_category, axis=1), 1.0, atol=1e-5)
    # Item 12 is a necklace: its necklace slice is the vector the index stores for it.
    np.testing.assert_allclose(
        per_category[CLASSES.index("necklace")], bundle.index["vectors"][12], atol=1e-4
    )


@pytest.mark.parametrize("source", ["descriptor", "photo_autoencoder", "backbone", "ensemble"])
def test_query_vectors_are_built_as_the_index_was(source, request):
    """A catalog photo's query vector is the vector the index stores for it (descriptor; autoencoder
    reading photos; frozen backbone of a pretrained bundle; descriptor of an ensemble's pretrained
    member)."""
    engine = request.getfixturevalue(f"{source}_engine")
    bundle = read_bundle(request.getfixturevalue(f"tiny_{source}_bundle"))
    vector = engine.features(PHOTOS[12:13]).vector(0, CLASSES.index("necklace"))
    np.testing.assert_allclose(vector, bundle.index["vectors"][12], atol=1e-4)


@pytest.mark.parametrize("source", ["autoencoder", "combined", "descriptor", "backbone"])
def test_scoped_search_stays_in_one_category(source, request):
    engine = request.getfixturevalue(f"{source}_engine")
    features = engine.features(PHOTOS[12:13])
    found = engine.recommend(features, k=5, category="necklace")
    assert found["items"][0]["item_id"] == "item012" and found["items"][0][
        "score"
    ] == pytest.approx(1.0, abs=1e-4)
    assert {item["category"] for item in found["items"]} == {"necklace"}
    unfiltered = engine.recommend(features, k=5)
    assert {item["category"] for item in unfiltered["items"]} == {unfiltered["category"]}
    by_id = engine.recommend_by_id("item025", k=PER_CLASS + 5)
    assert {item["category"] for item in by_id["items"]} == {"ring"} and len(
        by_id["items"]
    ) == PER_CLASS - 1


def test_an_autoencoder_index_without_its_encoders_is_refused(tiny_autoencoder_bundle):
    bundle = read_bundle(tiny_autoencoder_bundle)
    bundle.encoders.pop("ring")
    with pytest.raises(BundleError, match=r"need the encoders of \['ring'\]"):
        RecommendationEngine(bundle, "broken")


def test_an_autoencoder_index_without_foreground_settings_is_refused(tiny_autoencoder_bundle):
    bundle = read_bundle(tiny_autoencoder_bundle)
    bundle.config["preprocessing"].pop("foreground")
    with pytest.raises(BundleError, match="needs preprocessing.foreground"):
        RecommendationEngine(bundle, "broken")


def test_combined_features_put_the_classifier_embedding_beside_each_categorys_latent(
    combined_engine, engine, autoencoder_engine, tiny_combined_bundle
):
    bundle = read_bundle(tiny_combined_bundle)
    image = PHOTOS[12:13]
    per_category = combined_engine.features(image).vectors[0]
    classifier = engine.features(image).vectors[0, 0]
    latents = autoencoder_engine.features(image).vectors[0]
    scale = np.sqrt(
        1 + COMBINED_WEIGHT**2
    )  # both halves are unit vectors before the whole is made unit
    for block, latent in zip(per_category, latents):
        np.testing.assert_allclose(block[: len(classifier)] * scale, classifier, atol=1e-5)
        np.testing.assert_allclose(
            block[len(classifier) :] * scale, COMBINED_WEIGHT * latent, atol=1e-5
        )
    # Item 12 is a necklace: its necklace block is the vector the index stores for it.
    np.testing.assert_allclose(
        per_category[CLASSES.index("necklace")], bundle.index["vectors"][12], atol=1e-4
    )


def test_a_descriptor_index_of_another_layout_is_refused(tiny_descriptor_bundle):
    bundle = read_bundle(tiny_descriptor_bundle)
    bundle.index = {
        **bundle.index,
        "descriptor_layout": np.array([-1, 4]),
    }  # 4 x 4 grid: 16 x 16 values, the index holds 16 x 4
    with pytest.raises(
        BundleError, match="builds 256-d query vectors for a 64-d 'descriptor' index"
    ):
        RecommendationEngine(bundle, "broken")


@pytest.mark.parametrize(
    "source, key",
    [("combined", "combined_autoencoder_weight"), ("descriptor", "descriptor_layout")],
)
def test_an_index_without_what_its_queries_need_is_refused(source, key, request):
    bundle = read_bundle(request.getfixturevalue(f"tiny_{source}_bundle"))
    bundle.index.pop(key)
    with pytest.raises(BundleError, match=key):
        RecommendationEngine(bundle, "broken")


@pytest.fixture(scope="module")
def doubting_engine(tmp_path_factory) -> RecommendationEngine:
    """A combined-index engine whose stored policy doubts every category (confidence < 1.0)."""
    path = make_bundle(
        tmp_path_factory.mktemp("bundle") / "bundle", source="combined", answers=AnswerPolicy(1.0)
    )
    return RecommendationEngine(read_bundle(path), "doubting")


def test_an_unsure_answer_says_so_and_searches_every_category(
    doubting_engine, combined_engine, bundle
):
    photo = PHOTOS[12:13]
    unsure = doubting_engine.recommend(doubting_engine.features(photo), k=PER_CLASS * len(CLASSES))
    assert unsure["category_uncertain"] is True and unsure["close_match"] is True
    assert {item["category"] for item in unsure["items"]} == set(CLASSES)
    assert 0 < unsure["confidence"] < 1.0
    sure = combined_engine.recommend(combined_engine.features(photo), k=PER_CLASS * len(CLASSES))
    assert sure["category_uncertain"] is False and {i["category"] for i in sure["items"]} == {
        sure["category"]
    }
    filtered = doubting_engine.recommend(doubting_engine.features(photo), k=3, category="ring")
    assert filtered["category_uncertain"] is False and {
        i["category"] for i in filtered["items"]
    } == {"ring"}


def test_an_ensemble_bundle_answers_its_members_mean_probabilities(
    ensemble_engine, tiny_ensemble_bundle
):
    """The served class probabilities of an ensemble are the mean of its two networks', computed
    apart from the service's query code."""
    from jewelry_pipeline.core.models.classifier import ensemble_members

    photo = ensemble_engine.prepare(jpeg(5))
    answer = ensemble_engine.classify(ensemble_engine.features(photo[None]))
    pretrained, cnn = ensemble_members(read_bundle(tiny_ensemble_bundle).classifier)
    batch = photo[None].astype(np.float32)
    mean = (pretrained.predict(batch, verbose=0) + cnn.predict(batch, verbose=0))[0] / 2
    served = np.array([answer["probabilities"][name] for name in CLASSES])
    np.testing.assert_allclose(served, mean, atol=1e-5)
    assert answer["category"] == CLASSES[int(np.argmax(mean))]


def test_familiarity_is_scored_against_the_bundles_reference_as_the_run_scores_it(engine, bundle):
    """The service's familiarity of a photo equals the score of `core.familiarity` on the
    classifier's pooled features, computed apart; a catalog photo counts itself among its
    nearest."""
    from jewelry_pipeline.core.familiarity import FamiliarityReference
    from jewelry_pipeline.core.models.classifier import features_model

    photos = np.concatenate([engine.prepare(jpeg(5))[None], PHOTOS[:3]])
    served = engine.features(photos).familiarity
    pooled = features_model(bundle.classifier, pooled=True).predict(
        photos.astype(np.float32), verbose=0
    )[-1]
    reference = FamiliarityReference.from_arrays(bundle.familiarity)
    np.testing.assert_allclose(served, reference.score(pooled), atol=1e-5)
    nearest = np.sort(reference.vectors @ reference.vectors[:3].T, axis=0)[-reference.neighbours :]
    np.testing.assert_allclose(served[1:], nearest.mean(axis=0), atol=1e-3)


def test_catalog_vectors_are_made_without_scoring_familiarity(tiny_bundle):
    """Index rows need no familiarity: bulk embedding pays no reference product per photo."""
    from jewelry_pipeline.core.query import QueryEncoder

    bundle = read_bundle(tiny_bundle)  # its own copy: other tests alter the shared one

    class Unscorable:
        def score(self, pooled):
            raise AssertionError("familiarity scored for catalog vectors")

    encoder = QueryEncoder.of_bundle(bundle)
    encoder.familiarity = Unscorable()
    categories = bundle.catalog["category"].to_numpy()
    vectors = encoder.catalog_vectors(PHOTOS, np.arange(len(PHOTOS)), categories)
    np.testing.assert_allclose(vectors, bundle.index["vectors"], atol=1e-5)
    with pytest.raises(AssertionError, match="familiarity scored"):
        encoder.encode(PHOTOS[:1])  # a query does score it


@pytest.mark.parametrize("margin, refused", [(1e-3, True), (-1e-3, False)])
def test_a_photo_less_familiar_than_the_stored_threshold_is_not_in_our_catalog(
    tiny_bundle, margin, refused
):
    bundle = read_bundle(tiny_bundle)
    upload = RecommendationEngine(bundle, "any").prepare(jpeg(5))[None]
    familiarity = float(RecommendationEngine(bundle, "any").features(upload).familiarity[0])
    bundle.config["answers"] = AnswerPolicy(0.0, familiarity + margin).to_config()
    strict = RecommendationEngine(bundle, "strict")
    answer = strict.recommend(strict.features(upload), k=5)
    assert answer["close_match"] is not refused and (answer["items"] == []) is refused
    assert answer["category"] in CLASSES  # the category is still answered


def test_items_are_named_by_the_catalog_title_else_the_file_name(engine, tmp_path):
    found = engine.recommend_by_id("item003", k=3)
    assert found["item"]["title"] == "item003.jpg"  # the file name of its path
    bundle = read_bundle(make_bundle(tmp_path / "bundle"))
    bundle.catalog["title"] = [""] * (len(bundle.catalog) - 1) + ["Gold band"]
    titled = RecommendationEngine(bundle, "titled")
    last = titled.catalog["item_id"].iloc[-1]
    assert titled.recommend_by_id(last, 1)["item"]["title"] == "Gold band"
    assert titled.recommend_by_id("item003", 1)["item"]["title"] == "item003.jpg"
    assert titled.catalog_summary()["title"] == "Catalog"  # no title stored: the default
