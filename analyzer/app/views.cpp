#include "views.h"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QSplitter>
#include <QTextBrowser>
#include <QTextCharFormat>
#include <QTextCursor>
#include <QVBoxLayout>

#include <cmath>

#include "job_runner.h"
#include "plot_panel.h"

namespace decayfw::app {
namespace {

const QColor kDecayColor(200, 60, 30), kAttentionColor(40, 90, 200);

QColor color_for(const EngineSession& s) { return s.summary().decay ? kDecayColor : kAttentionColor; }
QString label_for(const EngineSession& s) { return s.summary().decay ? "decay" : "attention"; }
// "decay on cpu": where the speeds shown were measured
QString label_on_device(const EngineSession& s) {
  return label_for(s) + " on " + QString::fromStdString(s.summary().device);
}

std::vector<std::string> std_tokens(const std::vector<std::string>& t, size_t n) {
  return std::vector<std::string>(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(std::min(n, t.size())));
}

const char* kSampleText =
    "The history of the city began in the early years of the century , when the first settlers built a small "
    "church near the river . The town grew quickly , and by the end of the century it was the largest city in "
    "the region .";

}  // namespace

// -- Generate ---------------------------------------------------------------------------------------

GenerateView::GenerateView(Models& models, JobRunner& jobs, QWidget* parent) : View(models, jobs, parent) {
  auto* layout = new QVBoxLayout(this);
  prompt_ = new QPlainTextEdit("The history of the city began", this);
  prompt_->setMaximumHeight(70);
  prompt_->setToolTip(tr("The prompt: space-separated words of the model's dictionary"));
  auto* controls = new QHBoxLayout();
  length_ = new QSpinBox(this);
  length_->setRange(1, 2000);
  length_->setValue(40);
  sample_ = new QCheckBox(tr("Sample"), this);
  sample_->setToolTip(tr("Unchecked: greedy (fairseq --beam 1)"));
  temperature_ = new QDoubleSpinBox(this);
  temperature_->setRange(0.05, 5.0);
  temperature_->setSingleStep(0.1);
  temperature_->setValue(1.0);
  top_k_ = new QSpinBox(this);
  top_k_->setRange(0, 100000);
  top_p_ = new QDoubleSpinBox(this);
  top_p_->setRange(0.01, 1.0);
  top_p_->setSingleStep(0.05);
  top_p_->setValue(1.0);
  seed_ = new QSpinBox(this);
  seed_->setRange(0, 1 << 30);
  seed_->setValue(1);
  go_ = new QPushButton(tr("Generate"), this);
  stop_ = new QPushButton(tr("Stop"), this);
  stop_->setEnabled(false);
  for (auto [label, w] : std::initializer_list<std::pair<const char*, QWidget*>>{
           {"Length", length_}, {"Temperature", temperature_}, {"Top-k", top_k_}, {"Top-p", top_p_}, {"Seed", seed_}}) {
    controls->addWidget(new QLabel(tr(label), this));
    controls->addWidget(w);
  }
  controls->addWidget(sample_);
  controls->addStretch();
  controls->addWidget(go_);
  controls->addWidget(stop_);
  layout->addWidget(new QLabel(tr("Prompt"), this));
  layout->addWidget(prompt_);
  layout->addLayout(controls);
  auto* outputs = new QHBoxLayout();
  for (int i = 0; i < 2; ++i) {
    auto* col = new QVBoxLayout();
    speed_[i] = new QLabel(this);
    out_[i] = new QTextBrowser(this);
    col->addWidget(speed_[i]);
    col->addWidget(out_[i], 1);
    outputs->addLayout(col, 1);
  }
  layout->addLayout(outputs, 1);
  layout->addWidget(new QLabel(tr("Token background: the probability the model gave it (red: low, green: high)."), this));
  connect(go_, &QPushButton::clicked, this, &GenerateView::generate);
  connect(stop_, &QPushButton::clicked, this, &GenerateView::stop);
  connect(&jobs_, &JobRunner::busyChanged, this, [this](bool busy) {
    go_->setEnabled(!busy && models_.primary);
    stop_->setEnabled(busy);
  });
  modelsChanged();
}

void GenerateView::modelsChanged() {
  go_->setEnabled(models_.primary != nullptr && !jobs_.busy());
  out_[1]->setVisible(models_.comparison != nullptr);
  speed_[1]->setVisible(models_.comparison != nullptr);
  speed_[0]->setText(models_.primary ? label_on_device(*models_.primary) : tr("Open a checkpoint (File ▸ Open)"));
  if (models_.comparison) speed_[1]->setText(label_on_device(*models_.comparison));
}

GenerationSettings GenerateView::settings() const {
  GenerationSettings s;
  s.max_new_tokens = length_->value();
  s.sampling = sample_->isChecked();
  s.temperature = temperature_->value();
  s.top_k = top_k_->value();
  s.top_p = top_p_->value();
  s.seed = static_cast<uint64_t>(seed_->value());
  return s;
}

void GenerateView::setSettings(const GenerationSettings& s) {
  length_->setValue(static_cast<int>(s.max_new_tokens));
  sample_->setChecked(s.sampling);
  temperature_->setValue(s.temperature);
  top_k_->setValue(static_cast<int>(s.top_k));
  top_p_->setValue(s.top_p);
  seed_->setValue(static_cast<int>(s.seed));
}

QString GenerateView::outputText(int which) const { return plain_[which]; }

void GenerateView::generate() {
  if (!models_.primary) return;
  const std::string prompt = prompt_->toPlainText().toStdString();
  const GenerationSettings s = settings();
  std::vector<std::shared_ptr<EngineSession>> sessions = {models_.primary};
  if (models_.comparison) sessions.push_back(models_.comparison);
  for (int i = 0; i < 2; ++i) {
    out_[i]->clear();
    QTextCharFormat bold;
    bold.setFontWeight(QFont::Bold);
    out_[i]->textCursor().insertText(prompt_->toPlainText(), bold);
    plain_[i].clear();
  }
  jobs_.start(tr("Generating"), [this, sessions, prompt, s]() -> QString {
    for (size_t i = 0; i < sessions.size(); ++i) {
      const int which = static_cast<int>(i);
      const QString who = label_on_device(*sessions[i]);
      GenerationOutcome r = sessions[i]->generate(prompt, s, [this, which, who](const StreamedToken& t) {
        const QString piece = QString::fromStdString(t.piece);
        const int hue = static_cast<int>(120 * std::clamp(t.probability, 0.0, 1.0));  // red → green
        const QColor bg = QColor::fromHsv(hue, 60, 255);
        const double tps = t.seconds > 0 ? (t.index + 1) / t.seconds : 0;
        jobs_.post([this, which, piece, bg, who, tps, eos = t.eos]() {
          if (!eos) {  // plain text with a background: spaces between tokens survive (HTML would collapse them)
            QTextCursor c = out_[which]->textCursor();
            c.movePosition(QTextCursor::End);
            QTextCharFormat f;
            f.setBackground(bg);
            c.insertText(piece, f);
          }
          speed_[which]->setText(QString("%1 — %2 tokens/s").arg(who).arg(tps, 0, 'f', 1));
        });
        return true;
      }, jobs_.cancelFlag());
      const QString text = QString::fromStdString(r.text);
      jobs_.post([this, which, text, r, who]() {
        plain_[which] = text;
        speed_[which]->setText(QString("%1 — %2 tokens, %3 tokens/s%4")
                                   .arg(who).arg(r.ids.size()).arg(r.tokens_per_second, 0, 'f', 1)
                                   .arg(r.cancelled ? tr(" (stopped)") : QString()));
        if (which == 0) emit generated(text);
      });
      if (r.cancelled) break;
    }
    return {};
  }, [this](const QString& error) {
    if (!error.isEmpty()) emit failed(tr("Generation failed"), error);
  });
}

void GenerateView::stop() { jobs_.cancel(); }

// -- Gates ------------------------------------------------------------------------------------------

GatesView::GatesView(Models& models, JobRunner& jobs, QWidget* parent) : View(models, jobs, parent) {
  auto* layout = new QVBoxLayout(this);
  text_ = new QPlainTextEdit(kSampleText, this);
  text_->setMaximumHeight(60);
  auto* bar = new QHBoxLayout();
  layer_ = new QSpinBox(this);
  head_ = new QSpinBox(this);
  go_ = new QPushButton(tr("Compute"), this);
  bar->addWidget(new QLabel(tr("Layer"), this));
  bar->addWidget(layer_);
  bar->addWidget(new QLabel(tr("Head"), this));
  bar->addWidget(head_);
  bar->addWidget(go_);
  token_ = new QSlider(Qt::Horizontal, this);
  token_label_ = new QLabel(this);
  bar->addWidget(new QLabel(tr("Token"), this));
  bar->addWidget(token_, 1);
  bar->addWidget(token_label_);
  note_ = new QLabel(this);
  layout->addWidget(text_);
  layout->addLayout(bar);
  layout->addWidget(note_);
  gate_ = new PlotPanel(tr("Gate G_t = σ(z_t) σ(f_t)ᵀ at the chosen token"), tr("key dimension m"), tr("value dimension d"), this);
  sz_ = new PlotPanel(tr("σ(z) over time (row gates)"), tr("value dimension d"), tr("token"), this);
  sf_ = new PlotPanel(tr("σ(f) over time (column gates)"), tr("key dimension m"), tr("token"), this);
  auto* split = new QSplitter(Qt::Horizontal, this);
  split->addWidget(gate_);
  split->addWidget(sz_);
  split->addWidget(sf_);
  layout->addWidget(split, 1);
  connect(go_, &QPushButton::clicked, this, &GatesView::compute);
  connect(token_, &QSlider::valueChanged, this, &GatesView::showToken);
  connect(&jobs_, &JobRunner::busyChanged, this, [this](bool busy) { go_->setEnabled(!busy && models_.primary); });
  modelsChanged();
}

std::vector<PlotPanel*> GatesView::plots() const { return {gate_, sz_, sf_}; }

void GatesView::modelsChanged() {
  const bool ok = models_.primary != nullptr;
  go_->setEnabled(ok && !jobs_.busy());
  if (ok) {
    layer_->setRange(0, static_cast<int>(models_.primary->summary().layers - 1));
    head_->setRange(0, static_cast<int>(models_.primary->summary().heads - 1));
    note_->setText(models_.primary->summary().decay
                       ? QString()
                       : tr("This is a softmax-attention model: it has no gates. Its attention maps are in State decay "
                            "when it is loaded as the comparison model."));
  }
}

void GatesView::setText(const QString& text) { text_->setPlainText(text); }
void GatesView::setLayerHead(int layer, int head) {
  layer_->setValue(layer);
  head_->setValue(head);
}

void GatesView::compute() {
  if (!models_.primary) return;
  const std::string text = text_->toPlainText().toStdString();
  const int layer = layer_->value(), head = head_->value();
  auto primary = models_.primary, comparison = models_.comparison;
  auto result = std::make_shared<std::pair<HeadView, HeadView>>();
  jobs_.start(tr("Computing gates"), [=]() -> QString {
    result->first = primary->head_view(text, layer, head);
    if (comparison && layer < comparison->summary().layers && head < comparison->summary().heads) {
      result->second = comparison->head_view(text, layer, head);
    }
    return {};
  }, [this, result](const QString& error) {
    if (!error.isEmpty()) {
      emit failed(tr("Could not compute the gates"), error);
      return;
    }
    view_ = result->first;
    if (view_.decay) {
      token_->setRange(0, static_cast<int>(view_.T - 1));
      token_->setValue(static_cast<int>(view_.T - 1));
      sz_->setHeatMap(view_.sigma_z, static_cast<int>(view_.T), static_cast<int>(view_.D), "σ(z)", false, 0, 1);
      sz_->setYTickLabels(view_.tokens);
      sf_->setHeatMap(view_.sigma_f, static_cast<int>(view_.T), static_cast<int>(view_.M), "σ(f)", false, 0, 1);
      sf_->setYTickLabels(view_.tokens);
      showToken(token_->value());
    }
    emit headViewsReady(result->first, result->second);
  });
}

void GatesView::showToken(int t) {
  if (!view_.decay || t < 0 || t >= view_.T) return;
  token_label_->setText(QString("%1: %2").arg(t).arg(QString::fromStdString(view_.tokens[t])));
  gate_->setHeatMap(view_.gate_matrix(t), static_cast<int>(view_.D), static_cast<int>(view_.M), "G_t", false, 0, 1);
}

// -- State decay ------------------------------------------------------------------------------------

DecayView::DecayView(Models& models, JobRunner& jobs, QWidget* parent) : View(models, jobs, parent) {
  auto* layout = new QVBoxLayout(this);
  note_ = new QLabel(tr("Compute a head in the Gates view; its state decay appears here."), this);
  auto* bar = new QHBoxLayout();
  source_ = new QSlider(Qt::Horizontal, this);
  source_label_ = new QLabel(this);
  bar->addWidget(new QLabel(tr("Retention of the write of token"), this));
  bar->addWidget(source_, 1);
  bar->addWidget(source_label_);
  layout->addWidget(note_);
  layout->addLayout(bar);
  half_life_ = new PlotPanel(tr("Memory half-life per state element (log colour)"), tr("key dimension m"),
                             tr("value dimension d"), this);
  retention_ = new PlotPanel(tr("Retention of a write"), tr("token t"), tr("fraction of the write left"), this);
  norm_ = new PlotPanel(tr("‖S_t‖ over time"), tr("token t"), tr("Frobenius norm of the state"), this);
  implied_ = new PlotPanel(tr("Implied attention of decay (contribution of token j to output t)"), tr("source token j"),
                           tr("output token t"), this);
  base_ = new PlotPanel(tr("Attention of the comparison model, same layer and head"), tr("source token j"),
                        tr("output token t"), this);
  auto* grid = new QGridLayout();
  grid->addWidget(half_life_, 0, 0);
  grid->addWidget(retention_, 0, 1);
  grid->addWidget(norm_, 0, 2);
  grid->addWidget(implied_, 1, 0, 1, 1);
  grid->addWidget(base_, 1, 1, 1, 1);
  layout->addLayout(grid, 1);
  connect(source_, &QSlider::valueChanged, this, &DecayView::showRetention);
}

std::vector<PlotPanel*> DecayView::plots() const { return {half_life_, retention_, norm_, implied_, base_}; }

void DecayView::show(const HeadView& primary, const HeadView& comparison) {
  primary_ = primary;
  note_->setText(QString("Layer %1, head %2, %3 tokens%4")
                     .arg(primary.layer).arg(primary.head).arg(primary.T)
                     .arg(comparison.map.empty() ? tr("; load the attention base as the comparison model to see its "
                                                      "attention beside the implied attention")
                                                 : QString()));
  if (primary.decay) {
    half_life_->setHeatMap(primary.half_life, static_cast<int>(primary.D), static_cast<int>(primary.M),
                           tr("half-life (tokens)"), /*log=*/true);
    std::vector<double> t(primary.state_norm.size()), n(primary.state_norm.begin(), primary.state_norm.end());
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<double>(i);
    norm_->setSeries("‖S_t‖", t, n, kDecayColor);
    norm_->setXTickLabels(primary.tokens);
    implied_->setHeatMap(primary.map, static_cast<int>(primary.map_tokens), static_cast<int>(primary.map_tokens),
                         tr("share of output t"), false, 0, 1);
    const auto toks = std_tokens(primary.tokens, static_cast<size_t>(primary.map_tokens));
    implied_->setXTickLabels(toks);
    implied_->setYTickLabels(toks);
    source_->setRange(0, static_cast<int>(primary.map_tokens - 1));
    source_->setValue(0);
    showRetention(0);
  }
  const HeadView& att = primary.decay ? comparison : primary;
  if (!att.map.empty()) {
    base_->setHeatMap(att.map, static_cast<int>(att.map_tokens), static_cast<int>(att.map_tokens), tr("attention weight"),
                      false, 0, 1);
    const auto toks = std_tokens(att.tokens, static_cast<size_t>(att.map_tokens));
    base_->setXTickLabels(toks);
    base_->setYTickLabels(toks);
  }
}

void DecayView::showRetention(int j) {
  const int64_t Tm = primary_.map_tokens;
  if (!primary_.decay || j < 0 || j >= Tm) return;
  source_label_->setText(QString("%1: %2").arg(j).arg(QString::fromStdString(primary_.tokens[j])));
  std::vector<double> t, r;
  for (int64_t k = j; k < Tm; ++k) {
    t.push_back(static_cast<double>(k));
    r.push_back(primary_.retention[static_cast<size_t>(j * Tm + k)]);
  }
  retention_->setSeries(tr("write of token %1").arg(j), t, r, kDecayColor);
  retention_->keepOnlySeries(tr("write of token %1").arg(j));
}

// -- Perplexity -------------------------------------------------------------------------------------

PerplexityView::PerplexityView(Models& models, JobRunner& jobs, QWidget* parent) : View(models, jobs, parent) {
  auto* layout = new QVBoxLayout(this);
  text_ = new QPlainTextEdit(kSampleText, this);
  text_->setMaximumHeight(70);
  auto* bar = new QHBoxLayout();
  go_ = new QPushButton(tr("Score"), this);
  summary_ = new QLabel(this);
  bar->addWidget(go_);
  bar->addWidget(summary_, 1);
  loss_ = new PlotPanel(tr("Per-token loss"), tr("token"), tr("loss (nats, −log p)"), this);
  layout->addWidget(text_);
  layout->addLayout(bar);
  layout->addWidget(loss_, 1);
  connect(go_, &QPushButton::clicked, this, &PerplexityView::compute);
}

std::vector<PlotPanel*> PerplexityView::plots() const { return {loss_}; }
void PerplexityView::setText(const QString& text) { text_->setPlainText(text); }

void PerplexityView::compute() {
  if (!models_.primary) return;
  const std::string text = text_->toPlainText().toStdString();
  std::vector<std::shared_ptr<EngineSession>> sessions = {models_.primary};
  if (models_.comparison) sessions.push_back(models_.comparison);
  auto results = std::make_shared<std::vector<TokenLosses>>();
  jobs_.start(tr("Scoring"), [=]() -> QString {
    for (const auto& s : sessions) results->push_back(s->token_losses(text));
    return {};
  }, [this, sessions, results](const QString& error) {
    if (!error.isEmpty()) {
      emit failed(tr("Could not score the text"), error);
      return;
    }
    loss_->clearSeries();
    QString sum;
    for (size_t i = 0; i < results->size(); ++i) {
      const TokenLosses& r = (*results)[i];
      std::vector<double> x(r.loss.size()), y(r.loss.begin(), r.loss.end());
      for (size_t k = 0; k < x.size(); ++k) x[k] = static_cast<double>(k);
      loss_->setSeries(label_for(*sessions[i]), x, y, color_for(*sessions[i]));
      loss_->setXTickLabels(r.tokens);
      sum += QString("%1: perplexity %2 over %3 tokens   ").arg(label_for(*sessions[i]))
                 .arg(r.perplexity, 0, 'f', 2).arg(r.loss.size());
    }
    summary_->setText(sum);
  });
}

// -- Benchmark --------------------------------------------------------------------------------------

BenchmarkView::BenchmarkView(Models& models, JobRunner& jobs, QWidget* parent) : View(models, jobs, parent) {
  auto* layout = new QVBoxLayout(this);
  auto* bar = new QHBoxLayout();
  contexts_ = new QLineEdit("128,256,512,1024,2048,3072", this);
  contexts_->setToolTip(tr("Context lengths (tokens) at which a decode step is timed"));
  steps_ = new QSpinBox(this);
  steps_->setRange(1, 10000);
  steps_->setValue(16);
  go_ = new QPushButton(tr("Run"), this);
  stop_ = new QPushButton(tr("Cancel"), this);
  stop_->setEnabled(false);
  progress_ = new QProgressBar(this);
  bar->addWidget(new QLabel(tr("Contexts"), this));
  bar->addWidget(contexts_, 1);
  bar->addWidget(new QLabel(tr("Timed steps"), this));
  bar->addWidget(steps_);
  bar->addWidget(go_);
  bar->addWidget(stop_);
  bar->addWidget(progress_);
  note_ = new QLabel(this);
  latency_ = new PlotPanel(tr("Decode time per token against context"), tr("context length (tokens)"),
                           tr("milliseconds per token (median)"), this);
  memory_ = new PlotPanel(tr("State / KV-cache memory against context"), tr("context length (tokens)"),
                          tr("bytes (log scale)"), this);
  memory_->setLogY(true);
  auto* split = new QSplitter(Qt::Horizontal, this);
  split->addWidget(latency_);
  split->addWidget(memory_);
  layout->addLayout(bar);
  layout->addWidget(note_);
  layout->addWidget(split, 1);
  connect(go_, &QPushButton::clicked, this, &BenchmarkView::run);
  connect(stop_, &QPushButton::clicked, this, &BenchmarkView::cancel);
  connect(&jobs_, &JobRunner::busyChanged, this, [this](bool busy) {
    go_->setEnabled(!busy && models_.primary);
    stop_->setEnabled(busy);
  });
}

std::vector<PlotPanel*> BenchmarkView::plots() const { return {latency_, memory_}; }

void BenchmarkView::setContexts(const QString& contexts, int steps) {
  contexts_->setText(contexts);
  steps_->setValue(steps);
}

void BenchmarkView::run() {
  if (!models_.primary) return;
  std::vector<int64_t> contexts;
  for (const QString& c : contexts_->text().split(',', Qt::SkipEmptyParts)) {
    bool ok = false;
    const int v = c.trimmed().toInt(&ok);
    if (!ok || v < 0) {
      emit failed(tr("Benchmark"), tr("Contexts must be comma-separated non-negative integers, got '%1'").arg(c));
      return;
    }
    contexts.push_back(v);
  }
  const int64_t steps = steps_->value();
  auto primary = models_.primary, comparison = models_.comparison;
  samples_.clear();
  latency_->clearSeries();
  memory_->clearSeries();
  const int models = comparison ? 2 : (primary->summary().decay ? 2 : 1);
  expected_ = static_cast<int>(contexts.size()) * models;
  progress_->setRange(0, expected_);
  progress_->setValue(0);
  const QString where = tr("Decode steps on %1.").arg(QString::fromStdString(primary->summary().device));
  note_->setText(comparison || !primary->summary().decay
                     ? where
                     : where + " " + tr("No comparison model loaded: racing against an attention model of the same "
                                        "shape built from this checkpoint's weights."));
  jobs_.start(tr("Benchmarking"), [=]() -> QString {
    std::vector<std::shared_ptr<EngineSession>> sessions = {primary};
    if (comparison) {
      sessions.push_back(comparison);
    } else if (primary->summary().decay) {
      sessions.push_back(primary->attention_twin());
    }
    EngineSession::bench(sessions, contexts, steps, [this](const BenchSample& s) {
      jobs_.post([this, s]() { addSample(s); });
      return true;
    }, jobs_.cancelFlag());
    return {};
  }, [this](const QString& error) {
    if (!error.isEmpty()) emit failed(tr("Benchmark failed"), error);
  });
}

void BenchmarkView::cancel() { jobs_.cancel(); }

void BenchmarkView::addSample(const BenchSample& s) {
  samples_.push_back(s);
  std::vector<double> x, ms, bytes;
  for (const auto& p : samples_) {
    if (p.model != s.model) continue;
    x.push_back(static_cast<double>(p.context));
    ms.push_back(p.ms_per_token);
    bytes.push_back(static_cast<double>(std::max<int64_t>(1, p.state_bytes)));
  }
  const QString name = QString::fromStdString(s.model);
  const QColor c = s.model.rfind("decay", 0) == 0 ? kDecayColor : kAttentionColor;
  latency_->setSeries(name, x, ms, c);
  memory_->setSeries(name, x, bytes, c);
  progress_->setValue(static_cast<int>(samples_.size()));
}

}  // namespace decayfw::app
