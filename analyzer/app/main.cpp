// decayfw-analyzer: the desktop analyzer.
//   decayfw-analyzer [CHECKPOINT] [--compare BASE_CHECKPOINT] [--dict DICT] [--device cpu|cuda|cuda:N]
#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>

#include <thread>

#include "engine_bridge.h"
#include "main_window.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setOrganizationName("decayfw");
  QApplication::setApplicationName("decayfw-analyzer");
  QCommandLineParser cli;
  cli.setApplicationDescription("See what a model fine-tuned into decaying fast weights learned, and race it "
                                "against attention.");
  cli.addHelpOption();
  cli.addPositionalArgument("checkpoint", "a fairseq checkpoint (.pt) to open");
  QCommandLineOption compare("compare", "a second checkpoint (its attention base) to compare with", "checkpoint");
  QCommandLineOption dict("dict", "the dict.txt of the checkpoint (default: found beside it)", "file");
  QCommandLineOption device("device", "where the models run: cpu, cuda or cuda:N (default: the last choice, kept)",
                            "device");
  QCommandLineOption quit_after("quit-after-show", "quit once the window is shown (start-up timing)");
  cli.addOptions({compare, dict, device, quit_after});
  cli.process(app);
  decayfw::app::EngineSession::set_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  decayfw::app::MainWindow w;
  w.resize(1280, 820);
  w.show();
  if (cli.isSet(device)) w.setDevice(cli.value(device));  // one that cannot be used here: a dialog, and the CPU
  if (!cli.positionalArguments().isEmpty()) {
    w.openCheckpoint(cli.positionalArguments().front(), false, cli.value(dict));
    if (cli.isSet(compare)) {
      QObject::connect(&w, &decayfw::app::MainWindow::modelLoaded, &w, [&](bool comparison) {
        if (!comparison) w.openCheckpoint(cli.value(compare), true);
      });
    }
  }
  if (cli.isSet(quit_after)) QTimer::singleShot(0, &app, &QApplication::quit);
  return app.exec();
}
